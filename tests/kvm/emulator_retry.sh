#!/usr/bin/env bash
# Runs a kvm-tier test binary (its command line is this script's) and, in
# the nested test VM only, runs it once more if it failed with the mark of
# a fault of the emulated CPU rather than of dunk: a KVM_RUN that fails
# entry with SVM's VMEXIT_INVALID (docs/ARCHITECTURE.md, "Known problems").
# The first run's output stays in the log, followed by a line that says why
# the test runs again; any other failure, and a second one of any kind, is
# the test's result. Natively (a machine with /dev/kvm) it only runs the
# test.
set -u
if [[ -z ${DUNK_TEST_VM:-} || " $* " == *" --gtest_list_tests "* ]]; then
	exec "$@"
fi
log=$(mktemp "${TMPDIR:-/tmp}/dunk-kvm-test.XXXXXX")
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if ((status != 0)) && grep -q 'unexpected VM exit \[exit fail-entry reason=9 hw=0xffffffff\]' "$log"; then
	echo "emulator_retry: the emulated CPU refused an entry (VMEXIT_INVALID), a known fault of the test VM's emulator: running the test once more"
	"$@"
	status=$?
fi
exit $status
