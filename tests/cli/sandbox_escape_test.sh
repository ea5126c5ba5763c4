#!/usr/bin/env bash
# The escape suite of `dunk sandbox` (kvm tier): tests/programs/sandbox_escape.c
# tries one escape per case, under a policy that allows every call but
# getppid, so that only dunk's mediation stands in the way. Each case must
# fail in the way the table says, with the sandbox's report on stderr, and
# leave a sandbox that still works (the program's own output after the
# attempt) or a program killed for it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Rounds of each toctou_* race: 5,000 in the test tiers, 1,000,000 in the
# stress run (scripts/stress); the escape program reads the variable.
DUNK_ESCAPE_RACE_ROUNDS=$(rounds DUNK_ESCAPE_RACE_ROUNDS 5000 1000000)
export DUNK_ESCAPE_RACE_ROUNDS

# CASE  EXPECTED  REPORT
#   EXPECTED: held (the program saw the attempt fail and goes on: exit 0), or
#             kill:SIG (ring 3 faulted and the program died of SIG, as natively)
#   REPORT:   text a report line ("dunk sandbox: ...") on stderr must
#             contain; "-" where dunk
#             never sees the attempt (the comment says who stops it)
CASES=$(
	cat <<'EOF'
cli                          kill:SIGSEGV  killed: SIGSEGV at rip
sti                          kill:SIGSEGV  killed: SIGSEGV at rip
hlt                          kill:SIGSEGV  killed: SIGSEGV at rip
out_syscall_port             kill:SIGSEGV  killed: SIGSEGV at rip
out_fatal_port               kill:SIGSEGV  killed: SIGSEGV at rip
in_port                      kill:SIGSEGV  killed: SIGSEGV at rip
lgdt                         kill:SIGSEGV  killed: SIGSEGV at rip
lidt                         kill:SIGSEGV  killed: SIGSEGV at rip
mov_cr3                      kill:SIGSEGV  killed: SIGSEGV at rip
mov_dr7                      kill:SIGSEGV  killed: SIGSEGV at rip
wrmsr_lstar                  kill:SIGSEGV  killed: SIGSEGV at rip
rdmsr_efer                   kill:SIGSEGV  killed: SIGSEGV at rip
swapgs                       kill:SIGSEGV  killed: SIGSEGV at rip
invlpg                       kill:SIGSEGV  killed: SIGSEGV at rip
sysret                       kill:SIGSEGV  killed: SIGSEGV at rip
vmcall                       kill:SIGSEGV  killed: SIGSEGV at rip
int80                        kill:SIGSEGV  killed: SIGSEGV at rip
int_0x20                     kill:SIGSEGV  killed: SIGSEGV at rip
sysenter                     kill:SIGILL   killed: SIGILL at rip
load_ring0_ss                kill:SIGSEGV  killed: SIGSEGV at rip
load_ring0_ds                kill:SIGSEGV  killed: SIGSEGV at rip
ljmp_ring0_cs                kill:SIGSEGV  killed: SIGSEGV at rip
lcall_tss                    kill:SIGSEGV  killed: SIGSEGV at rip
iretq_ring0_cs               kill:SIGSEGV  killed: SIGSEGV at rip
far_ret_ring0                kill:SIGSEGV  killed: SIGSEGV at rip
vmmcall_every_number         held          -
compat_syscall               kill:SIGILL   killed: SIGILL at rip
compat_sysenter              kill:SIGSEGV  killed: SIGSEGV at rip
compat_int80                 kill:SIGSEGV  killed: SIGSEGV at rip
ldt_code_syscall             held          refused modify_ldt(
read_into_dunk               held          refused read(
pread_into_dunk              held          refused pread64(
readv_into_dunk              held          refused readv(
recvmsg_into_dunk            held          refused recvmsg(
recvmsg_control_into_dunk    held          refused recvmsg(
getdents_into_dunk           held          refused getdents64(
uname_into_dunk              held          refused uname(
clock_gettime_into_dunk      held          refused clock_gettime(
fstatat_into_dunk            held          refused newfstatat(
getrandom_into_dunk          held          refused getrandom(
write_from_dunk              held          refused write(
sendmsg_from_dunk            held          refused sendmsg(
stat_path_in_dunk            held          refused newfstatat(
execve_argv_in_dunk          held          refused execve(
sigaction_in_dunk            held          refused rt_sigaction(
sigaction_old_into_dunk      held          refused rt_sigaction(
process_vm_writev_self       held          refused process_vm_writev(
process_vm_readv_self        held          refused process_vm_readv(
set_tid_address_dunk         held          refused set_tid_address(
set_robust_list_dunk         held          refused set_robust_list(
rseq_dunk                    held          -
sigaltstack_outside          held          refused sigaltstack(
clone_stack_outside          held          refused clone(
clone_parent_settid_outside  held          refused clone(
clone3_stack_outside         held          refused clone3(
mmap_fixed_over_dunk         held          refused mmap(
mmap_hint_dunk               held          -
mprotect_dunk                held          refused mprotect(
munmap_dunk                  held          refused munmap(
munmap_region_end            held          refused munmap(
munmap_region_start          held          refused munmap(
mremap_onto_dunk             held          refused mremap(
madvise_dunk                 held          refused madvise(
brk_past_region              held          -
shmat_at_dunk                held          refused shmat(
proc_self_mem                held          refused openat(AT_FDCWD, "/proc/self/mem"
proc_thread_self_mem         held          refused openat(AT_FDCWD, "/proc/thread-self/mem"
proc_pid_mem                 held          refused openat(AT_FDCWD, "/proc/
proc_dotdot_mem              held          refused openat(AT_FDCWD, "/proc/self/../self/./mem"
proc_mem_by_dirfd            held          , "mem", O_RDONLY) -> -1 EACCES
proc_mem_via_symlink         held          refused openat(AT_FDCWD, "mem-link"
proc_map_files_dunk          held          -
dunk_fds                     held          refused poll(
dup2_over_dunk               held          refused dup2(
close_range_dunk             held          -
proc_fd_links                held          -
sigreturn_cs                 kill:SIGSEGV  killed: SIGSEGV at rip
sigreturn_ss                 kill:SIGSEGV  killed: SIGSEGV at rip
sigreturn_rip                kill:SIGSEGV  killed: SIGSEGV at rip
sigreturn_noncanonical       kill:SIGSEGV  killed: SIGSEGV at rip
sigreturn_iopl               kill:SIGSEGV  killed: SIGSEGV at rip
sigreturn_fpstate            kill:SIGSEGV  killed: SIGSEGV at rip
sigreturn_xsave              kill:SIGSEGV  killed: SIGSEGV at rip
ptrace_child                 held          refused ptrace(PTRACE_ATTACH
ptrace_traceme               held          refused ptrace(PTRACE_TRACEME
fork_then_escape             held          killed: SIGSEGV at rip
execve_then_escape           held          refused read(
toctou_path                  held          refused openat(AT_FDCWD, "/proc/self/mem"
toctou_iovec                 held          refused writev(
io_uring                     held          refused io_uring_setup(
userfaultfd_dunk             held          refused userfaultfd(
personality_rie              kill:SIGSEGV  killed: SIGSEGV at rip
seccomp_by_program           held          refused seccomp(
prctl_set_mm                 held          refused prctl(PR_SET_MM
tiocsti                      held          refused ioctl(
thread_denied_call           held          denied getppid() -> -1 EACCES
EOF
)
# Who stops the cases without a report:
#   vmmcall_every_number  KVM answers VMMCALL at CPL 3 itself (-KVM_EPERM)
#                         without an exit; the case checks that no call ran
#   rseq_dunk             the sandbox has no rseq at all (ENOSYS to everyone)
#   mmap_hint_dunk        a hint is only a hint: the mapping lands in the region
#   brk_past_region       brk fails as natively, leaving the break
#   proc_map_files_dunk   the kernel cannot reopen the vCPU's anonymous inode
#   close_range_dunk, proc_fd_links
#                         close_range spares dunk's descriptors and
#                         /proc/self/fd hides them; dup2 onto them and a poll
#                         naming them are refused and reported

escape_program() {
	echo "$(dirname "$DUNK")/tests/programs/sandbox_escape"
}

policy() {
	printf '%s\n' '{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}' >"$WORK/policy.json"
	echo "$WORK/policy.json"
}

signal_number() {
	case $1 in
	SIGILL) echo 4 ;;
	SIGSEGV) echo 11 ;;
	*) fail "no number for $1" ;;
	esac
}

run_case() {
	local name=$1 expected=$2 report=$3
	mkdir "$WORK/cwd"
	STATUS=0
	# Only 0-2 open (not ctest's log): the case's descriptors are its own.
	(cd "$WORK/cwd" && for fd in /proc/self/fd/*; do
		fd=${fd##*/}
		((fd <= 2)) || eval "exec $fd>&-"
	done && exec "$DUNK" sandbox --policy "$(policy)" -- "$(escape_program)" "$name") \
		>"$WORK/out" 2>"$WORK/err" </dev/null || STATUS=$?
	OUT=$(<"$WORK/out")
	ERR=$(<"$WORK/err")
	echo "--- stdout"
	echo "$OUT"
	echo "--- stderr (first lines)"
	head -n 5 "$WORK/err" | cut -c1-300
	[[ $OUT != *ESCAPED* ]] || fail "$name escaped: $OUT"
	case $expected in
	held)
		expect_eq "exit status of $name" 0 "$STATUS"
		[[ $OUT == *"$name: held ("* || $name == execve_then_escape ]] || fail "$name did not say it held: [$OUT]"
		;;
	kill:*)
		local sig=${expected#kill:}
		expect_eq "exit status of $name (killed by $sig)" $((128 + $(signal_number "$sig"))) "$STATUS"
		expect_eq "stdout of $name" "$name: trying" "$OUT"
		expect_contains "dunk's reason" "killed by $sig" "$ERR"
		;;
	esac
	if [[ $report != - ]]; then
		grep '^dunk sandbox: ' "$WORK/err" | grep -F "$report" >/dev/null || fail "no report line with '$report' for $name"
	fi
}

# One test per case.
while read -r name expected report; do
	eval "test_$name() { run_case $name $expected $(printf '%q' "$report"); }"
done <<<"$CASES"

# The program's cases and the table are the same list.
test_every_case_in_the_table() {
	expect_eq "cases of $(escape_program)" "$("$(escape_program)" --list)" "$(awk '{ print $1 }' <<<"$CASES")"
	local count
	count=$(grep -c . <<<"$CASES")
	((count >= 40)) || fail "only $count cases"
	echo "$count cases"
}

# After the execve, the new image (the same program) tries again.
test_execve_then_escape_in_the_new_image() {
	run_case execve_then_escape held "refused read("
	expect_eq "the new image's output" "read_into_dunk: held (read into dunk's .data: Bad address)" "$OUT"
}

# The races' reports name what was decided (the copy), not what the
# sibling thread put in the program's memory afterwards.
test_toctou_path() {
	run_case toctou_path held 'refused openat(AT_FDCWD, "/proc/self/mem"'
	if grep '^dunk sandbox: refused openat(AT_FDCWD, "/dev/null"' "$WORK/err" >/dev/null; then
		fail "a report names the path the sibling wrote after the check"
	fi
}
test_toctou_iovec() {
	run_case toctou_iovec held "refused writev("
	# Each refused writev's report decodes the copy that was refused: one
	# iov_base at least is the pointer outside the region (shown as a
	# pointer; the program's own buffers are shown as their bytes).
	if grep '^dunk sandbox: refused writev(' "$WORK/err" |
		grep -Ev 'writev\([0-9]+, \[\{iov_base=.*iov_base=0x[0-9a-f]+, iov_len=16\}.*\], 32\) -> -1 EFAULT|writev\([0-9]+, \[\{iov_base=0x[0-9a-f]+, iov_len=16\}.*\], 32\) -> -1 EFAULT' >/dev/null; then
		fail "a refused writev's report does not show the iovecs that were refused"
	fi
}

# Signals stay among the sandbox's processes, whatever the policy (the
# default allows kill and friends): a process outside and dunk's own
# waiting process cannot be signalled or given a pidfd, and survive; the
# sandbox's children are reached by each way; kill(-1) and kill(0) reach
# only the sandbox's processes (tests/programs/sandbox_signal_scope.py).
test_signals_stay_in_the_sandbox() {
	sleep 600 >/dev/null 2>&1 &
	local outside=$!
	# Expanded now: the function's variables are gone when the script exits.
	trap "kill $outside 2>/dev/null; rm -rf '$WORK'" EXIT
	run_cmd "$DUNK" sandbox -- "$PYTHON" "$TESTS_DIR/../programs/sandbox_signal_scope.py" "$outside"
	echo "$ERR"
	expect_eq "exit status" 0 "$STATUS"
	local refused="" who
	for who in outside dunk; do
		refused+="kill $who: No such process
kill -0 $who: No such process
tkill $who: No such process
tgkill $who: No such process
rt_sigqueueinfo $who: No such process
pidfd_open $who: No such process
"
	done
	expect_eq "output" "${refused}kill a child: done
child ended by signal 15
tgkill a child: done
child ended by signal 15
rt_sigqueueinfo a child: done
child ended by signal 15
pidfd_send_signal a child: done
child ended by signal 15
kill -1: done
child ended by signal 15
kill 0: done
child ended by signal 10 ; the caller's handler ran" "$OUT"
	kill -0 "$outside" || fail "the process outside the sandbox was killed"
	expect_contains "the report" "a process outside the sandbox" "$ERR"
}

# The denied call of a thread names the thread, not the process.
test_thread_denial_names_the_thread() {
	run_case thread_denied_call held "denied getppid() -> -1 EACCES"
	local line
	line=$(grep -F "denied getppid()" "$WORK/err")
	[[ $line =~ \[pid\ ([0-9]+)\ tid\ ([0-9]+)\  ]] || fail "no pid/tid in [$line]"
	[[ ${BASH_REMATCH[1]} != "${BASH_REMATCH[2]}" ]] || fail "the report names the process, not the thread: [$line]"
}

main "$@"
