# Helpers for the command-line tests, sourced by each *_test.sh.
#
# A test script defines test_* functions and ends with `main "$@"`:
#   SCRIPT --list          prints its tests (CMake registers one ctest entry each)
#   SCRIPT DUNK TEST       runs one test with DUNK = the dunk executable
# A test fails by exiting non-zero; `fail` says why.
set -euo pipefail

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROGRAMS_DIR=$(cd "$TESTS_DIR/../programs" && pwd)

# The python3 that runs the helper scripts (natively) and the workload:
# a real executable, not a wrapper script, so that the workload is python.
PYTHON=${DUNK_TEST_PYTHON:-/usr/bin/python3}
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)

# rounds VAR BOUNDED STRESS: how many rounds a race or a load runs. The test
# tiers run BOUNDED (scripts/test stays within CI's time), the stress command
# (scripts/stress, DUNK_TEST_STRESS=1) runs STRESS; VAR, when set to a
# positive number, overrides both.
rounds() {
	local value=${!1:-}
	if [[ $value =~ ^[1-9][0-9]*$ ]]; then
		echo "$value"
	elif [[ ${DUNK_TEST_STRESS:-} == 1 ]]; then
		echo "$3"
	else
		echo "$2"
	fi
}

# as_unprivileged CMD...: CMD as nobody when the test runs as root (with a
# KVM handle it inherits: DUNK_KVM_FD), as it is otherwise: RLIMIT_NPROC
# binds only a user without CAP_SYS_RESOURCE, and a namespace or a cgroup
# is what an unprivileged user may make.
as_unprivileged() {
	if (($(id -u) == 0)); then
		exec 9<>/dev/kvm
		DUNK_KVM_FD=9 setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
	else
		"$@"
	fi
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
	[[ $2 == "$3" ]] || fail "$1: expected [$2], got [$3]"
}

# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() {
	[[ $3 == *"$2"* ]] || fail "$1: expected it to contain [$2], got [$3]"
}

# expect_lines WHAT N TEXT: TEXT has exactly N lines.
expect_lines() {
	local n
	n=$(printf '%s' "$3" | grep -c '' || true)
	[[ $n == "$2" ]] || fail "$1: expected $2 line(s), got $n: [$3]"
}

# run_cmd CMD...: runs CMD; sets OUT, ERR and STATUS (128+N if signal N killed it).
run_cmd() {
	local out_file=$WORK/.out err_file=$WORK/.err
	STATUS=0
	"$@" >"$out_file" 2>"$err_file" || STATUS=$?
	OUT=$(<"$out_file")
	ERR=$(<"$err_file")
}

# expect_report TEXT PREFIX: a line of TEXT is dunk sandbox's report PREFIX
# followed by its tail, "[pid P tid T rip 0xR]".
expect_report() {
	local line
	while IFS= read -r line; do
		[[ $line == "$2"* && ${line#"$2"} =~ ^\[pid\ [0-9]+\ tid\ [0-9]+\ rip\ 0x[0-9a-f]+\]$ ]] && return 0
	done <<<"$1"
	fail "no report [$2...] in [$1]"
}

# expect_refused STATUS MESSAGE CMD...: CMD exits STATUS with one stderr line
# starting "dunk: " that contains MESSAGE, and prints nothing on stdout.
expect_refused() {
	local status=$1 message=$2
	shift 2
	run_cmd "$@"
	expect_eq "exit status of $*" "$status" "$STATUS"
	expect_lines "stderr of $*" 1 "$ERR"
	[[ $ERR == "dunk: "* ]] || fail "stderr of $* does not start with 'dunk: ': [$ERR]"
	expect_contains "stderr of $*" "$message" "$ERR"
	expect_eq "stdout of $*" "" "$OUT"
}

# same_files WHAT A B: files A and B are identical, byte for byte.
same_files() {
	cmp -s "$2" "$3" && return 0
	echo "--- $1 differs; diff (first lines):" >&2
	diff -a "$2" "$3" | head -n 20 >&2 || true
	fail "$1 differs between $2 and $3"
}

# same_trees A B: the two directories hold the same files with the same bytes.
same_trees() {
	local a=$1 b=$2 list_a list_b f
	list_a=$(cd "$a" && find . -mindepth 1 | LC_ALL=C sort)
	list_b=$(cd "$b" && find . -mindepth 1 | LC_ALL=C sort)
	expect_eq "files left by the program" "$list_a" "$list_b"
	while IFS= read -r f; do
		if [[ -f $a/$f ]]; then
			same_files "file $f" "$a/$f" "$b/$f"
		fi
	done <<<"$list_a"
}

# compare_native [--setup FUNCTION] [--normalise FILTER] [--processes N] CMD...:
# runs CMD natively and with `dunk exec`, each in a fresh working directory
# (prepared by FUNCTION DIR), in the same environment otherwise; stdout,
# stderr, the exit status and the files each run leaves behind must be
# identical byte for byte (stdout and stderr after FILTER, a command that
# reads the text and writes it with what differs from run to run natively
# too — addresses, process IDs — replaced); the VM-mode run must have run
# in VM mode (with at least N processes in it, default 1). Prints the two
# wall-clock times and what the VM-mode run cost.
compare_native() {
	local setup=: normalise=cat processes=1
	while [[ $1 == --* ]]; do
		case $1 in
		--setup) setup=$2 ;;
		--normalise) normalise=$2 ;;
		--processes) processes=$2 ;;
		*) fail "compare_native: unknown option $1" ;;
		esac
		shift 2
	done
	local mode dir start
	for mode in native vm; do
		dir=$WORK/$mode
		mkdir "$dir"
		"$setup" "$dir"
		local -a prefix=()
		if [[ $mode == vm ]]; then
			prefix=("$DUNK" exec --stats-json="$WORK/stats.json" --)
		fi
		start=$EPOCHREALTIME
		(cd "$dir" && exec "${prefix[@]}" "$@") >"$WORK/$mode.stdout" 2>"$WORK/$mode.stderr" &&
			echo 0 >"$WORK/$mode.status" || echo $? >"$WORK/$mode.status"
		awk -v what="$*" -v mode="$mode" -v start="$start" -v end="$EPOCHREALTIME" \
			'BEGIN { printf "%s: %-6s %7.2f s\n", what, mode, end - start }'
	done
	local stream
	for mode in native vm; do
		for stream in stdout stderr; do
			"$normalise" <"$WORK/$mode.$stream" >"$WORK/$mode.$stream.normalised"
			mv "$WORK/$mode.$stream.normalised" "$WORK/$mode.$stream"
		done
	done
	same_files "exit status" "$WORK/native.status" "$WORK/vm.status"
	same_files "stdout" "$WORK/native.stdout" "$WORK/vm.stdout"
	same_files "stderr" "$WORK/native.stderr" "$WORK/vm.stderr"
	same_trees "$WORK/native" "$WORK/vm"
	# Equal results prove nothing if the program did not run in VM mode.
	"$PYTHON" "$TESTS_DIR/stats_check.py" "$WORK/stats.json" "processes >= $processes" "totals.syscalls >= 1" ||
		fail "$* did not run in VM mode"
}

main() {
	if [[ ${1:-} == --list ]]; then
		declare -F | awk '$3 ~ /^test_/ { print substr($3, 6) }'
		return 0
	fi
	(($# == 2)) || fail "usage: $0 --list | $0 DUNK TEST"
	DUNK=$1
	local test=test_$2
	declare -F "$test" >/dev/null || fail "no test $2 in $0"
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/dunk-cli-test.XXXXXX")
	chmod 755 "$WORK"
	trap 'rm -rf "$WORK"' EXIT
	ulimit -c 0 # programs killed on purpose leave no core files
	"$test"
	echo "PASS: $2"
}
