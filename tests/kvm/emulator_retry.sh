#!/usr/bin/env bash
# Runs a kvm-tier test (a test binary or a cli script: its command line is
# this script's) and, in the nested test VM only, runs it again (twice at
# most) if it failed with the mark of a fault of the emulated CPU rather
# than of dunk (docs/ARCHITECTURE.md, "Known problems"):
#  - a KVM_RUN that fails entry with SVM's VMEXIT_INVALID;
#  - for the binaries whose tests take interrupts, a run that outlives
#    DUNK_TEST_HANG_LIMIT seconds (set by tests/kvm/CMakeLists.txt; these
#    tests take seconds): a vCPU that KVM_RUN keeps running without a
#    single exit.
# Each run's output stays in the log, followed by a line that says why the
# test runs again; any other failure, and a third one of these, is the
# test's result. Natively (a machine with /dev/kvm) it only runs the
# test.
set -u
if [[ -z ${DUNK_TEST_VM:-} || " $* " == *" --gtest_list_tests "* ]]; then
	exec "$@"
fi
limit=()
if [[ -n ${DUNK_TEST_HANG_LIMIT:-} ]]; then
	limit=(timeout --kill-after=10 "$DUNK_TEST_HANG_LIMIT")
fi
log=$(mktemp "${TMPDIR:-/tmp}/dunk-kvm-test.XXXXXX")
trap 'rm -f "$log"' EXIT
# Up to two more runs, each only after a run that failed with such a mark:
# under load the two faults can come one after the other.
for ((run = 1; ; run++)); do
	"${limit[@]}" "$@" 2>&1 | tee "$log"
	status=${PIPESTATUS[0]}
	why=
	if ((status != 0)) && grep -q 'unexpected VM exit \[exit fail-entry reason=9 hw=0xffffffff\]' "$log"; then
		why="the emulated CPU refused an entry (VMEXIT_INVALID)"
	elif ((${#limit[@]} > 0 && (status == 124 || status == 137))); then
		why="the test did not end within $DUNK_TEST_HANG_LIMIT s (a vCPU taking interrupts that KVM_RUN runs on without exits)"
	fi
	if [[ -z $why ]]; then
		exit $status
	fi
	if ((run == 3)); then
		echo "emulator_retry: $why, the third time: the test fails"
		exit $status
	fi
	echo "emulator_retry: $why, a known fault of the test VM's emulator: running the test once more"
done
