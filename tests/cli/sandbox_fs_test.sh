#!/usr/bin/env bash
# The file-system view of `dunk sandbox` (kvm tier): --ro-bind/--bind trees
# reachable and nothing else, writes under --ro-bind refused, and no way out
# by symlinks, "..", magic links, inherited descriptors or races
# (tests/programs/sandbox_fs.c); real programs inside a view.
#
# The races run 400 rounds each in the test tiers (about a minute in the
# nested test VM, where a round is a few emulated VM exits), 1,000,000 in the
# stress run (scripts/stress); with hardware KVM a million take minutes:
#   DUNK_FS_RACE_ROUNDS=1000000 ctest --test-dir build -R cli_sandbox_fs_races --output-on-failure
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=$(rounds DUNK_FS_RACE_ROUNDS 400 1000000)

# WORK/in, ro, in2, race are bound; WORK/outside and WORK/file are not.
make_tree() {
	mkdir -p "$WORK"/{in,ro/sub,in2,outside,race/dir,race/deep/a/b}
	echo inside >"$WORK/in/file"
	echo read-only >"$WORK/ro/file"
	echo SECRET >"$WORK/outside/secret"
	echo SECRET >"$WORK/outside/file"
	echo SECRET >"$WORK/file"
	echo inside >"$WORK/race/dir/file"
	echo inside >"$WORK/race/deep/file"
	ln -s "$WORK/outside" "$WORK/race/link"
	ln -s "$WORK/outside/secret" "$WORK/in/abs_escape"
	ln -s "../../../../../../../..$WORK/outside/secret" "$WORK/in/rel_escape"
	ln -s /ro/file "$WORK/in/to_ro"
	ln -s loop "$WORK/in/loop"
}

# Sockets on a tmpfs (the nested test VM's /tmp, 9p, cannot hold them):
# SOCKETS/in is bound at /sockets; SOCKETS/outside holds a listening
# stream socket and a bound datagram socket, as a daemon's would be.
outside_sockets() {
	SOCKETS=$(mktemp -d /dev/shm/dunk-fs-test.XXXXXX)
	mkdir "$SOCKETS/in" "$SOCKETS/outside"
	ln -s "$SOCKETS/outside/sock" "$SOCKETS/in/sock_link"
	"$PYTHON" -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1] + "/sock"); s.listen()
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind(sys.argv[1] + "/dgram")
open(sys.argv[1] + "/ready", "w").close()
time.sleep(600)' "$SOCKETS/outside" &
	LISTENER=$!
	trap 'kill $LISTENER 2>/dev/null; rm -rf "$WORK" "$SOCKETS"' EXIT
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -e $SOCKETS/outside/ready ]] && return 0
		sleep 0.1
	done
	fail "the outside sockets did not come up"
}

# An allow-all policy: only the view stands in the way.
allow_all() {
	printf '{"defaultAction": "SCMP_ACT_ALLOW"}\n' >"$WORK/allow.json"
	echo "$WORK/allow.json"
}

# What a dynamic program needs (Debian's /lib, /lib64 and /bin are symlinks
# into /usr: a bind follows them, as bubblewrap's does), the test programs,
# and the trees above.
view() {
	local programs
	programs=$(dirname "$DUNK")/tests/programs
	VIEW=(--ro-bind /usr /usr --ro-bind /lib /lib --ro-bind /lib64 /lib64 --ro-bind /bin /bin
		--ro-bind /proc /proc --ro-bind "$programs" /programs
		--bind "$WORK/in" /work --ro-bind "$WORK/ro" /ro --bind "$WORK/in2" /work2
		--bind "$WORK/race" "$WORK/race")
}

# The names of the cases of `sandbox_fs paths`, in its order.
PATH_CASES="read_inside read_ro unbound_path host_path_outside dotdot_from_bind dotdot_above_root dotdot_of_root
dotdot_from_dirfd symlink_absolute_escape symlink_relative_escape symlink_inside symlink_loop lstat_symlink readlink
proc_self_fd proc_self_fd_inside proc_self_root proc_thread_self_root proc_self_cwd proc_pid_cwd proc_self_ordinary
proc_self_fd_pipe proc_self_fd_pipe_write proc_self_fd_stat_pipe proc_self_fd_closed dev_fd_unbound proc_self_fd_ro_write
proc_self_fd_ro_read proc_self_fd_held_read proc_self_fd_held_write proc_self_fd_held_chmod proc_self_fd_dunks
ro_open_write ro_open_trunc ro_creat ro_creat_existing_readonly ro_creat_excl_existing ro_mkdir ro_unlink ro_rmdir
ro_rename ro_link ro_symlink ro_chmod ro_truncate ro_utimes ro_access_write ro_access_read ro_via_symlink root_mkdir
mount_point_rmdir rw_create rw_mkdir rw_rename rw_symlink rw_link rw_chmod rw_unlink rename_across_binds
hardlink_from_outside create_outside getcwd_view_path relative_open relative_dotdot fchdir chdir_outside
chdir_dotdot_at_root openat2_beneath openat2_in_root openat2_no_symlinks name_to_handle_at chroot inherited_dirfd unix_bind_inside
unix_connect_inside unix_connect_outside unix_connect_symlink unix_sendto_outside unix_sendmmsg_outside unix_sendmmsg_inside
unix_bind_read_only"

# expect_cases OUTPUT NAMES: every NAME has an "ok" line, in that order,
# and there is nothing else; nothing escaped.
expect_cases() {
	[[ $1 != *ESCAPED* ]] || fail "a case escaped: $1"
	local got expected
	got=$(sed -n 's/^\([a-z0-9_]*\): ok (.*)$/\1/p' <<<"$1")
	expected=$(tr -s ' \n' '\n\n' <<<"$2" | sed '/^$/d')
	if [[ $got != "$expected" ]]; then
		echo "$1" >&2
		fail "the cases that held differ from the list"
	fi
	expect_eq "lines of output" "$(grep -c '' <<<"$expected")" "$(grep -c '' <<<"$1")"
}

test_paths() {
	make_tree
	outside_sockets
	view
	VIEW+=(--bind "$SOCKETS/in" /sockets)
	# fd 3: a directory outside the view, inherited; fd 4: a file outside
	# the view, given to the program for reading.
	echo "held outside" >"$WORK/held"
	DUNK_FS_SOCKETS=$SOCKETS run_cmd "$DUNK" sandbox --policy "$(allow_all)" "${VIEW[@]}" -- \
		/programs/sandbox_fs paths "$WORK/outside" 3<"$WORK/outside" 4<"$WORK/held"
	echo "$OUT"
	echo "--- stderr"
	echo "$ERR"
	expect_eq "exit status" 0 "$STATUS"
	expect_cases "$OUT" "$PATH_CASES"
	# On the host: what the program made in /work is in WORK/in; nothing
	# changed under --ro-bind or outside.
	expect_eq "the file made and moved" made "$(<"$WORK/in/dir/moved")"
	expect_eq "the read-only tree" "file sub" "$(cd "$WORK/ro" && echo *)"
	expect_eq "the read-only file" read-only "$(<"$WORK/ro/file")"
	expect_eq "outside" "file secret" "$(cd "$WORK/outside" && echo *)"
	expect_eq "the file held for reading" "held outside" "$(<"$WORK/held")"
	expect_eq "its mode" 644 "$(stat -c %a "$WORK/held")"
	[[ -S $SOCKETS/in/srv ]] || fail "the program's socket is not in SOCKETS/in"
	# What bubblewrap would follow and the view refuses is reported: the
	# magic links, the handle, chroot, the inherited directory.
	local report
	for report in 'refused openat(AT_FDCWD, "/proc/self/fd/' 'refused openat(AT_FDCWD, "/proc/self/root' \
		'refused openat(AT_FDCWD, "/proc/self/cwd' 'refused name_to_handle_at(' 'refused chroot("/work")' \
		'refused openat(3, "secret"'; do
		grep -F "dunk sandbox: $report" <<<"$ERR" >/dev/null || fail "no report [$report...]"
	done
	grep -F 'a magic link of /proc' <<<"$ERR" >/dev/null || fail "the magic-link reports do not say why"
	grep -F 'refused openat(AT_FDCWD, "/proc/self/fd/4", O_RDWR' <<<"$ERR" | grep -F 'for more than it was opened for' \
		>/dev/null || fail "the reopening of fd 4 for writing is not reported with its reason"
	grep -F 'a directory outside the file-system view' <<<"$ERR" >/dev/null ||
		fail "the inherited directory's report does not say why"
}

test_races() {
	make_tree
	view
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" "${VIEW[@]}" -- /programs/sandbox_fs races "$WORK/outside" \
		"$WORK/race" "$ROUNDS"
	echo "$OUT"
	echo "$ERR" | head -n 5
	expect_eq "exit status" 0 "$STATUS"
	expect_cases "$OUT" "symlink_swap_race rename_race"
}

# Real programs in a view: a shell pipeline, a #! script, execve inside the
# view (and not of a program outside it), python3 with its standard
# library from the view.
test_programs() {
	make_tree
	view
	printf '#!/bin/sh\necho "script in $(pwd)"\n' >"$WORK/in/script.sh"
	chmod +x "$WORK/in/script.sh"
	cp /bin/true "$WORK/outside/prog"
	# --stats: every process of the view's sandbox (Landlock on) opens the
	# statistics file, which is not in the view.
	run_cmd "$DUNK" sandbox "${VIEW[@]}" --stats-json "$WORK/stats.json" --chdir /work -- /bin/sh -c \
		'ls /; cat file | tr a-z A-Z; ./script.sh; /bin/echo executed; '"'$WORK/outside/prog'"'; echo "outside: $?"'
	expect_eq "exit status" 0 "$STATUS"
	local root
	root=$(printf '%s\n' bin lib lib64 proc programs ro tmp usr work work2)
	expect_eq "the shell's output" "$(printf '%s\nINSIDE\nscript in /work\nexecuted\noutside: 127' "$root")" "$OUT"
	expect_contains "sh's message" "not found" "$ERR"
	"$PYTHON" "$TESTS_DIR/stats_check.py" "$WORK/stats.json" "processes >= 5" ||
		fail "the statistics did not count every process of the shell"
	run_cmd "$DUNK" sandbox "${VIEW[@]}" -- "$PYTHON" -c 'import json, os, sqlite3, hashlib
os.chdir("/work")
with open("out.json", "w") as f: json.dump(sorted(os.listdir(".")), f)
print(os.getcwd(), hashlib.sha256(open("file", "rb").read()).hexdigest(), sqlite3.sqlite_version_info >= (3,))'
	expect_eq "python3's exit status" 0 "$STATUS"
	expect_eq "python3's output" "/work $(sha256sum <"$WORK/in/file" | cut -d' ' -f1) True" "$OUT"
	expect_eq "python3's file" '["abs_escape", "file", "loop", "out.json", "rel_escape", "script.sh", "to_ro"]' \
		"$(<"$WORK/in/out.json")"
	# Without its loader in the view, a dynamic program cannot start.
	run_cmd "$DUNK" sandbox --ro-bind /usr/bin /usr/bin -- /usr/bin/true
	expect_eq "a dynamic program without /lib64" 127 "$STATUS"
	expect_contains "the reason" "ld-linux-x86-64.so.2 (the program's interpreter): No such file or directory" "$ERR"
}

# bubblewrap's usual command line (its demo's: /usr bound, the rest made
# with --symlink, --dir, --tmpfs, --dev and --proc) runs as it is: a shell
# writes in /tmp, /run and /dev/shm (and /var/tmp, a symlink to /tmp),
# reads its stdin (a file outside the view) and a pipe through /dev/stdin,
# uses process substitution (/dev/fd/N), sees bubblewrap's / and /dev, and
# appends to its stdout through /dev/stdout: the same output as under
# bubblewrap itself (Debian's bwrap, run the same way in the same place),
# and the output expected. Then what differs on purpose: "/" is read-only
# here, and --dev's nodes cannot be changed. What dunk made for the view is
# gone afterwards.
test_bubblewrap_forms() {
	local tmpdir="$WORK/tmpdir" script
	mkdir -p "$tmpdir"
	local forms=(--ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin
		--dir /tmp --dir /var --symlink ../tmp /var/tmp --tmpfs /run --proc /proc --dev /dev --chdir /)
	script='cat /dev/stdin
echo one >/tmp/a && cat /tmp/a
echo two >/var/tmp/b && cat /tmp/b
echo three >/run/c && cat /run/c
echo four >/dev/shm/d && cat /dev/shm/d
ls /; ls /dev; ls /var
echo piped | cat /dev/stdin
cat <(echo substituted)
diff <(echo same) <(echo same) && echo no difference
echo x >/dev/null && head -c 3 /dev/zero | od -An -tx1
readlink /dev/stdout /var/tmp /lib
mkdir /tmp/d && cd /tmp/d && pwd
test -w /dev/stdout && echo "/dev/stdout is writable"
echo appended through /dev/stdout >>/dev/stdout'
	echo "a file outside the view" >"$WORK/input"
	command -v bwrap >/dev/null || fail "no bwrap (scripts/setup installs bubblewrap)"
	run_cmd bwrap "${forms[@]}" -- /bin/bash -c "$script" <"$WORK/input"
	expect_eq "bubblewrap's exit status (stderr: $ERR)" 0 "$STATUS"
	local native=$OUT
	TMPDIR=$tmpdir run_cmd "$DUNK" sandbox "${forms[@]}" -- /bin/bash -c "$script" <"$WORK/input"
	echo "$ERR"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "the same output as under bubblewrap" "$native" "$OUT"
	expect_eq "output" "a file outside the view
one
two
three
four
bin
dev
lib
lib64
proc
run
tmp
usr
var
core
fd
full
null
ptmx
pts
random
shm
stderr
stdin
stdout
tty
urandom
zero
tmp
piped
substituted
no difference
 00 00 00
/proc/self/fd/1
../tmp
usr/lib
/tmp/d
/dev/stdout is writable
appended through /dev/stdout" "$OUT"
	TMPDIR=$tmpdir run_cmd "$DUNK" sandbox "${forms[@]}" -- /bin/bash -c \
		'touch /y 2>/dev/null || echo "/ is read-only"; chmod 600 /dev/null || echo "chmod /dev/null refused"'
	expect_eq "what differs from bubblewrap" "/ is read-only
chmod /dev/null refused" "$OUT"
	expect_contains "chmod's message" "chmod: changing permissions of '/dev/null': Operation not permitted" "$ERR"
	expect_eq "the host's /dev/null" "666" "$(stat -c %a /dev/null)"
	expect_eq "what dunk made for the view, afterwards" "" "$(ls -A "$tmpdir")"
}

# The view once the process's first thread has ended (tests/programs/
# sandbox_fs.c first_thread_gone): /proc/self/fd of a process whose first
# thread is a zombie names nothing, so the supervisor names its own
# descriptors through /proc/thread-self.
test_first_thread_gone() {
	make_tree
	view
	run_cmd "$DUNK" sandbox --policy "$(allow_all)" "${VIEW[@]}" -- /programs/sandbox_fs first_thread_gone
	echo "$ERR"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "output" "gone_open: ok (open(/work/file))
gone_openat: ok (openat(/work, file))
gone_proc_status: ok (/proc/self/status read)
gone_reopen_pipe: ok (a pipe reopened through /proc/thread-self/fd/N)" "$OUT"
}

# What dunk made for the view goes when the sandbox ends, whatever the
# program did to it: a background writer the program left in /tmp is ended
# first (dunk does not spin behind it), a directory of mode 000, a tree 300
# deep; run as an unprivileged user, for whom mode 000 means something. A
# memfd as stdin (no Landlock rule can name it) does not keep the sandbox
# from starting.
test_own_trees_are_removed() {
	local tmpdir="$WORK/tmpdir"
	mkdir -p "$tmpdir"
	chmod 0777 "$tmpdir"
	local view=(--ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin --tmpfs /tmp)
	TMPDIR=$tmpdir run_cmd timeout 300 "$DUNK" sandbox "${view[@]}" -- /bin/sh -c \
		'(while :; do echo x >/tmp/f.$$; rm -f /tmp/f.$$; done) & echo started'
	expect_eq "exit status with a writer left running" 0 "$STATUS"
	expect_eq "output" started "$OUT"
	expect_eq "what dunk made, afterwards" "" "$(ls -A "$tmpdir")"
	TMPDIR=$tmpdir run_cmd as_unprivileged timeout 300 "$DUNK" sandbox "${view[@]}" -- /bin/sh -c \
		'mkdir /tmp/closed /tmp/wx && touch /tmp/closed/f && chmod 0 /tmp/closed && chmod 0300 /tmp/wx &&
		 mkdir -p /tmp/deep/$(printf "d/%.0s" $(seq 300)) && echo made'
	expect_eq "exit status as nobody" 0 "$STATUS"
	expect_eq "output as nobody" made "$OUT"
	expect_eq "what dunk made, afterwards (as nobody)" "" "$(ls -A "$tmpdir")"
	run_cmd "$PYTHON" -c 'import os, subprocess, sys
fd = os.memfd_create("stdin")
os.write(fd, b"from a memfd\n")
os.lseek(fd, 0, 0)
sys.exit(subprocess.run(sys.argv[1:], stdin=fd).returncode)' "$DUNK" sandbox "${view[@]}" -- /bin/cat
	expect_eq "exit status with a memfd as stdin" 0 "$STATUS"
	expect_eq "output with a memfd as stdin" "from a memfd" "$OUT"
}

# The rest of bubblewrap's file-system and environment options: --*-try
# (a missing source left out), --file and --ro-bind-data from descriptors
# with --perms, --remount-ro, --perms on --tmpfs, --clearenv/--setenv/
# --unsetenv, --new-session.
test_bubblewrap_more_forms() {
	mkdir -p "$WORK/rw"
	echo "was here" >"$WORK/rw/old"
	local script='cat /etc/passwd; stat -c "%a %s" /etc/passwd /etc/group; stat -c %a /tmp
echo x >/etc/passwd && cat /etc/passwd
echo y >/etc/group 2>/dev/null || echo "/etc/group is read-only"
ls /opt; cat /rw/old; touch /rw/new 2>/dev/null || echo "/rw is read-only"
env | grep -v ^PWD= | sort
[ "$(cut -d" " -f6 /proc/$$/stat)" = "$$" ] && echo "a session of its own"'
	TMPDIR=$WORK run_cmd env KEEP=kept DROP=dropped "$DUNK" sandbox --ro-bind /usr /usr --symlink usr/lib /lib \
		--symlink usr/lib64 /lib64 --symlink usr/bin /bin --proc /proc --dev /dev \
		--ro-bind-try /nonexistent /missing --ro-bind-try "$WORK/rw" /opt --bind "$WORK/rw" /rw --remount-ro /rw \
		--perms 0600 --file 3 /etc/passwd --ro-bind-data 4 /etc/group --perms 1777 --tmpfs /tmp \
		--clearenv --setenv KEEP "$(printf 'a b')" --setenv PATH /bin --setenv GONE soon --unsetenv GONE --new-session \
		-- /bin/sh -c "$script" 3<<<"root:x:0:0::/:/bin/sh" 4<<<"root:x:0:"
	echo "$ERR"
	expect_eq "exit status" 0 "$STATUS"
	expect_eq "output" "root:x:0:0::/:/bin/sh
600 22
644 10
1777
x
/etc/group is read-only
old
was here
/rw is read-only
KEEP=a b
PATH=/bin
a session of its own" "$OUT"
	[[ ! -e $WORK/rw/new ]] || fail "--remount-ro left /rw writable"
	expect_eq "what dunk made for the view, afterwards" "" "$(ls -d "$WORK"/dunk-view.* 2>/dev/null)"
}

# A call the view serves itself that blocks (a sendto by path to a full
# AF_UNIX datagram socket) and a timer's handler that alone unblocks it
# (tests/programs/sandbox_timer_wakes.c): a signal that comes while the
# view resolves the path or forwards the send reaches the program's handler
# first, and the send runs again; none hangs or fails.
test_signals_wake_blocking_sends_in_the_view() {
	local program want
	program="$(dirname "$DUNK")/tests/programs/sandbox_timer_wakes"
	SIGNAL_DIR=$(mktemp -d /dev/shm/dunk-fs-signals.XXXXXX)
	trap 'rm -rf "$WORK" "$SIGNAL_DIR"' EXIT
	want=$("$program" 1000 "$SIGNAL_DIR")
	expect_eq "natively" "1000 rounds, each send woken by its own handler" "$want"
	make_tree
	view
	run_cmd timeout 600 "$DUNK" sandbox --policy "$(allow_all)" "${VIEW[@]}" --bind "$SIGNAL_DIR" /sockets -- \
		/programs/sandbox_timer_wakes 1000 /sockets
	expect_eq "status in the view" 0 "$STATUS"
	expect_eq "stdout in the view" "$want" "$OUT"
	expect_eq "stderr in the view" "" "$ERR"
}

main "$@"
