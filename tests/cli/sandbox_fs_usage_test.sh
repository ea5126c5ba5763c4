#!/usr/bin/env bash
# `dunk sandbox`'s file-system options without KVM (unit tier): every bad
# bind is refused before anything runs (125, a line naming the option and
# the reason), PROG is looked up in the view, and each spelling of
# --ro-bind SRC [DST] reaches the VM-mode check (which fails here) with
# PROG's arguments left to PROG.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_kvm() { DUNK_KVM_DEVICE=/nonexistent "$@"; }

test_bad_binds() {
	mkdir "$WORK/dir"
	touch "$WORK/file"
	local ran=$WORK/ran
	no_kvm expect_refused 125 "--ro-bind $WORK/missing: cannot open the source: No such file or directory" \
		"$DUNK" sandbox --ro-bind "$WORK/missing" -- /bin/touch "$ran"
	no_kvm expect_refused 125 "--bind $WORK/dir relative: the destination must be an absolute path without '..'" \
		"$DUNK" sandbox --bind "$WORK/dir" relative -- /bin/touch "$ran"
	no_kvm expect_refused 125 "--ro-bind $WORK/dir /a/../b: the destination must be an absolute path without '..'" \
		"$DUNK" sandbox --ro-bind "$WORK/dir" /a/../b -- /bin/touch "$ran"
	no_kvm expect_refused 125 "--ro-bind $WORK/file /: only a directory can be the view's /" \
		"$DUNK" sandbox --ro-bind "$WORK/file" / -- /bin/touch "$ran"
	no_kvm expect_refused 125 "--bind $WORK/dir /usr/no-such-dir/x: the destination's parent /usr/no-such-dir is not a directory in the view" \
		"$DUNK" sandbox --ro-bind /usr /usr --bind "$WORK/dir" /usr/no-such-dir/x -- /bin/touch "$ran"
	no_kvm expect_refused 125 "--bind: an empty SRC" "$DUNK" sandbox --bind '' -- /bin/touch "$ran"
	[[ ! -e $ran ]] || fail "a program ran with a bad bind"
}

# bubblewrap's --tmpfs, --dir and --symlink that cannot be made: refused
# before anything runs, nothing made on the host.
test_bad_forms() {
	mkdir -p "$WORK/ro" "$WORK/rw"
	ln -s elsewhere "$WORK/rw/link"
	local ran=$WORK/ran
	mkdir "$WORK/tmpdir"
	TMPDIR=$WORK/tmpdir no_kvm expect_refused 125 \
		"dunk: sandbox: --dir /ro/new: /ro/new would be made in --ro-bind $WORK/ro /ro, which is read-only" \
		"$DUNK" sandbox --tmpfs /tmp --dev /dev --ro-bind "$WORK/ro" /ro --dir /ro/new -- /bin/touch "$ran"
	[[ ! -e $WORK/ro/new ]] || fail "--dir made a directory in a read-only bind"
	expect_eq "what dunk made for the refused view, afterwards" "" "$(ls -A "$WORK/tmpdir")"
	no_kvm expect_refused 125 "dunk: sandbox: --symlink text /rw/link: /rw/link is already there in --bind $WORK/rw /rw, not as this symlink" \
		"$DUNK" sandbox --bind "$WORK/rw" /rw --symlink text /rw/link -- /bin/touch "$ran"
	expect_eq "the symlink already there" elsewhere "$(readlink "$WORK/rw/link")"
	no_kvm expect_refused 125 "dunk: sandbox: --symlink only-one: needs both TEXT and DST" \
		"$DUNK" sandbox --symlink only-one -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --symlink usr /: the view's / cannot be a symlink" \
		"$DUNK" sandbox --symlink usr / -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --tmpfs tmp: the destination must be an absolute path without '..'" \
		"$DUNK" sandbox --tmpfs tmp -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --dev /none/dev: the destination's parent /none is not a directory in the view" \
		"$DUNK" sandbox --ro-bind /usr / --dev /none/dev -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --perms must come right before --tmpfs, --dir, --file, --bind-data or --ro-bind-data, not before --ro-bind" \
		"$DUNK" sandbox --perms 0700 --ro-bind /usr /usr -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --perms 700: no --tmpfs, --dir, --file, --bind-data or --ro-bind-data after it" \
		"$DUNK" sandbox --perms 0700 -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --perms 0800: not an octal mode" \
		"$DUNK" sandbox --perms 0800 --tmpfs /tmp -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --remount-ro /usr/lib: no bind before it has /usr/lib as its destination" \
		"$DUNK" sandbox --ro-bind /usr /usr --remount-ro /usr/lib -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --file 9 /etc/x: cannot read descriptor 9: Bad file descriptor" \
		"$DUNK" sandbox --file 9 /etc/x -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --file /etc/x: needs both FD and DST" \
		"$DUNK" sandbox --file /etc/x -- /bin/touch "$ran"
	[[ ! -e $ran ]] || fail "a program ran with a bad form"
}

# bubblewrap's options for what dunk has not (namespaces, capabilities, a
# BPF seccomp program, ...): refused before anything runs, with the reason,
# never taken for PROG or silently ignored.
test_bubblewrap_options_dunk_has_not() {
	local ran=$WORK/ran
	no_kvm expect_refused 125 "dunk: sandbox: --unshare-pid: dunk has no PID namespace: the program sees the host's processes" \
		"$DUNK" sandbox --unshare-pid -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --unshare-all: dunk makes no namespaces but the network's (--unshare-net)" \
		"$DUNK" sandbox --ro-bind /usr /usr --unshare-all --share-net -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --hostname: dunk has no UTS namespace" \
		"$DUNK" sandbox --hostname box -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --seccomp: dunk's policy is a JSON seccomp profile (--policy FILE), not a BPF program" \
		"$DUNK" sandbox --seccomp 3 -- /bin/touch "$ran"
	no_kvm expect_refused 125 "dunk: sandbox: --die-with-parent: dunk cannot end the program's whole tree when it dies itself (use --time-limit)" \
		"$DUNK" sandbox --die-with-parent -- /bin/touch "$ran"
	[[ ! -e $ran ]] || fail "a program ran with an option dunk has not"
}

# PROG is found in the view, not on the host.
test_program_in_the_view() {
	no_kvm expect_refused 127 "dunk: touch: command not found" "$DUNK" sandbox --ro-bind "$WORK" /w -- touch x
	PATH=/usr/bin:/bin no_kvm expect_refused 125 "no /nonexistent" \
		"$DUNK" sandbox --ro-bind /usr /usr --ro-bind /lib64 /lib64 -- touch x
}

test_bind_spellings() {
	local -a forms=("--ro-bind /usr --" "--ro-bind /usr /usr" "--ro-bind /usr /usr --"
		"--bind $WORK /w --ro-bind /usr /usr" "--dev-bind /usr /usr --chdir /usr --"
		"--ro-bind /usr /usr --log $WORK/log --")
	local form
	for form in "${forms[@]}"; do
		# shellcheck disable=SC2086 # split the form into its words
		no_kvm expect_refused 125 "dunk: cannot enter VM mode: no /nonexistent" \
			"$DUNK" sandbox $form /usr/bin/sh -c 'exit 4' -c --help
	done
	# Without "--", a bind's second argument is its DST: here the view has
	# only /usr/bin/sh, and no /usr/bin/true.
	no_kvm expect_refused 127 "dunk: true: command not found" "$DUNK" sandbox --ro-bind /usr /usr/bin/sh true
}

main "$@"
