#!/usr/bin/env bash
# Runs a kvm-tier test (a test binary or a cli script: its command line is
# this script's) and, in the nested test VM only, runs it once more if it
# failed with the mark of a fault of the emulated CPU rather than of dunk
# (docs/ARCHITECTURE.md,
# "Known problems"):
#  - a KVM_RUN that fails entry with SVM's VMEXIT_INVALID;
#  - for the binaries whose tests take interrupts, a run that outlives
#    DUNK_TEST_HANG_LIMIT seconds (set by tests/kvm/CMakeLists.txt; these
#    tests take seconds): a vCPU that KVM_RUN keeps running without a
#    single exit.
# The first run's output stays in the log, followed by a line that says why
# the test runs again; any other failure, and a second one of any kind, is
# the test's result. Natively (a machine with /dev/kvm) it only runs the
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
"${limit[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
why=
if ((status != 0)) && grep -q 'unexpected VM exit \[exit fail-entry reason=9 hw=0xffffffff\]' "$log"; then
	why="the emulated CPU refused an entry (VMEXIT_INVALID)"
elif ((${#limit[@]} > 0 && (status == 124 || status == 137))); then
	why="the test did not end within $DUNK_TEST_HANG_LIMIT s (a vCPU taking interrupts that KVM_RUN runs on without exits)"
fi
if [[ -n $why ]]; then
	echo "emulator_retry: $why, a known fault of the test VM's emulator: running the test once more"
	"${limit[@]}" "$@"
	status=$?
	if ((${#limit[@]} > 0 && (status == 124 || status == 137))); then
		echo "emulator_retry: the second run did not end within $DUNK_TEST_HANG_LIMIT s either"
	fi
fi
exit $status
