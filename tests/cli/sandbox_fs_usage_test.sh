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
