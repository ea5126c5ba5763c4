#!/usr/bin/env bash
# `dunk sandbox --learn FILE` (kvm tier): the program runs allowing every
# call, FILE gets the smallest policy that lets that run pass, and the
# program rerun under it gives the same output and status with no
# violation; the policy is no wider than the run (another program, or the
# same one with a call taken out, meets denials).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

probe() {
	echo "$(dirname "$DUNK")/tests/programs/sandbox_probe_$1"
}

# learn_then_rerun CMD...: learns CMD's policy, reruns CMD under it; both
# runs give the same stdout, stderr and status, the rerun no report.
learn_then_rerun() {
	rm -f "$WORK/learned.json"
	run_cmd "$DUNK" sandbox --learn "$WORK/learned.json" -- "$@"
	local out=$OUT err=$ERR status=$STATUS
	[[ -s $WORK/learned.json ]] || fail "--learn wrote nothing for $*"
	grep -q '^dunk sandbox:' <<<"$err" && fail "the learning run of $* reported: [$err]"
	run_cmd "$DUNK" sandbox --policy "$WORK/learned.json" -- "$@"
	[[ $STATUS == "$status" ]] ||
		fail "exit status under the learned policy ($*): expected [$status], got [$STATUS]; stderr: [$ERR]"
	expect_eq "stdout under the learned policy ($*)" "$out" "$OUT"
	expect_eq "stderr under the learned policy ($*), no violation" "$err" "$ERR"
	echo "$*: $("$PYTHON" -c 'import json, sys; print(sum(len(r["names"]) for r in json.load(open(sys.argv[1]))["syscalls"]))' "$WORK/learned.json") calls"
}

test_learn_then_rerun() {
	learn_then_rerun "$(probe static)" facts one 'two words'
	learn_then_rerun "$(probe pie)" facts
	learn_then_rerun /bin/echo hello from a learned policy
	# Processes and execve: sh forks, executes tr and ls; what every
	# process of the sandbox made is in the policy.
	learn_then_rerun /bin/sh -c 'echo a b c | tr a-z A-Z; ls / >/dev/null; exit 3'
	learn_then_rerun "$PYTHON" -c 'import hashlib, json, threading
t = threading.Thread(target=lambda: print("thread", flush=True)); t.start(); t.join()
print(json.dumps({"sha": hashlib.sha256(b"dunk").hexdigest()}))'
}

# The policy is the run's, no more: a call the run never made is denied,
# and each call it made is needed.
test_learned_policy_is_no_wider_than_the_run() {
	run_cmd "$DUNK" sandbox --learn "$WORK/echo.json" -- /bin/echo hi
	expect_eq "learning run" "0 hi" "$STATUS $OUT"
	"$PYTHON" - "$WORK/echo.json" <<-'EOF' || fail "the learned policy: $(<"$WORK/echo.json")"
		import json, sys
		p = json.load(open(sys.argv[1]))
		assert p["defaultAction"] == "SCMP_ACT_ERRNO", p
		names = [n for r in p["syscalls"] for n in r["names"]]
		assert "write" in names and "execve" not in names and "mkdir" not in names, names
		assert all(r["action"] == "SCMP_ACT_ALLOW" for r in p["syscalls"]), p
	EOF
	run_cmd "$DUNK" sandbox --policy "$WORK/echo.json" -- /bin/mkdir "$WORK/made"
	[[ ! -e $WORK/made ]] || fail "mkdir ran under echo's learned policy"
	grep -q '^dunk sandbox: denied mkdir(' <<<"$ERR" || fail "no denial of mkdir: [$ERR]"
	# Without write, echo's one write is denied.
	"$PYTHON" - "$WORK/echo.json" "$WORK/no-write.json" <<-'EOF'
		import json, sys
		p = json.load(open(sys.argv[1]))
		for r in p["syscalls"]:
		    r["names"] = [n for n in r["names"] if n != "write"]
		p["syscalls"] = [r for r in p["syscalls"] if r["names"]]
		json.dump(p, open(sys.argv[2], "w"))
	EOF
	run_cmd "$DUNK" sandbox --policy "$WORK/no-write.json" -- /bin/echo hi
	expect_eq "stdout without write" "" "$OUT"
	grep -qF 'dunk sandbox: denied write(1, "hi\n", 3) -> -1 EPERM by ' <<<"$ERR" || fail "no denial of write: [$ERR]"
}

# With --policy, the learning run still allows everything, and the calls
# beyond that policy are named in a rule of their own.
test_learn_against_a_policy() {
	printf '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]}\n' >"$WORK/ref.json"
	run_cmd "$DUNK" sandbox --policy "$WORK/ref.json" --learn "$WORK/learned.json" -- "$(probe static)" errno getppid
	expect_eq "the learning run allows what the policy denies" "getppid: ok (errno 0)" "$OUT"
	expect_eq "no report" "" "$ERR"
	"$PYTHON" - "$WORK/learned.json" "$WORK/ref.json" <<-'EOF' || fail "the learned policy: $(<"$WORK/learned.json")"
		import json, sys
		p = json.load(open(sys.argv[1]))
		beyond = p["syscalls"][-1]
		assert beyond["names"] == ["getppid"], beyond
		assert beyond["comment"] == ("calls the learning run made that the policy " + sys.argv[2] +
		                             " denies with the arguments they were first made with"), beyond
	EOF
	run_cmd "$DUNK" sandbox --policy "$WORK/learned.json" -- "$(probe static)" errno getppid
	expect_eq "rerun" "0 getppid: ok (errno 0) " "$STATUS $OUT $ERR"
}

test_learn_file_refused_before_running() {
	expect_refused 125 "--learn: cannot write $WORK/no/such/dir/p.json: No such file or directory" \
		"$DUNK" sandbox --learn "$WORK/no/such/dir/p.json" -- /bin/touch "$WORK/ran"
	[[ ! -e $WORK/ran ]] || fail "the program ran"
}

main "$@"
