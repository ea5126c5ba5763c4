#!/usr/bin/env bash
# Self-test of scripts/in-vm: shared writable mappings in the shared folders.
# In each writable shared folder (the host's /tmp and the checkout) the guest
# maps a file MAP_SHARED read-only, makes it read/write with mprotect, writes
# the first page from a fork child and the second from the parent
# (in_vm_shared_mmap.c). The guest must live through it, read(2) in the guest
# must see both writes, and so must the host, while the guest still runs
# and after in-vm returns. With 9p's
# cache=mmap the first write killed the guest kernel (a BUG_ON in
# v9fs_vm_page_mkwrite).
# Prints "N passed, N failed" and exits non-zero on any mismatch.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
checkout=$(cd -- "$here/../.." && pwd)
in_vm=$checkout/scripts/in-vm

passed=0 failed=0
# check NAME EXPECTED ACTUAL
check() {
	if [[ $2 == "$3" ]]; then
		passed=$((passed + 1))
		printf 'ok:   %s\n' "$1"
	else
		failed=$((failed + 1))
		printf 'FAIL: %s\n' "$1"
		diff -u --label expected --label actual <(printf '%s\n' "$2") <(printf '%s\n' "$3") |
			sed 's/^/      /' || true
	fi
}

tmp=$(mktemp -d /tmp/in-vm-mmap-test.XXXXXX)
in_checkout=$checkout/.cache/in-vm-mmap-test.$$
trap 'rm -rf "$tmp" "$in_checkout"' EXIT
mkdir -p "$checkout/.cache"

command -v cc >/dev/null || {
	echo "FAIL: no C compiler (cc) to build the writer"
	exit 1
}
cc -O2 -o "$tmp/writer" "$here/in_vm_shared_mmap.c"

# Build the image first, so that its one-time messages stay out of the
# stderr compared below.
"$in_vm" --prepare

# One file per shared folder, named by where it lives.
declare -A folder_of=([$tmp/mapped]="/tmp" [$in_checkout]="the checkout")
files=("$tmp/mapped" "$in_checkout")

# What each file must hold: each text at the start of its page, zeros
# elsewhere.
page=4096 child_text=$'written by the child\n' parent_text=$'written by the parent\n'
{
	printf '%s' "$child_text"
	head -c $((page - ${#child_text})) /dev/zero
	printf '%s' "$parent_text"
	head -c $((page - ${#parent_text})) /dev/zero
} >"$tmp/expected"
all_written() {
	local f
	for f in "${files[@]}"; do cmp -s -- "$tmp/expected" "$f" || return; done
}

# After the writer, the guest waits (60 s at most) for the host to create
# $ACK, which it does once it sees the bytes: what the guest writes must
# reach the host during the run (the guest kernel writes dirty pages back
# after 30 s at most), not only when the guest shuts down.
# shellcheck disable=SC2016 # expanded by the guest's bash
guest='"$0" "$@" || exit
for ((i = 0; i < 600; i++)); do [[ -e $ACK ]] && exit 0; sleep 0.1; done
echo "no ack from the host" >&2
exit 3'
ACK=$tmp/ack DUNK_VM_TIMEOUT=300 "$in_vm" bash -c "$guest" "$tmp/writer" "${files[@]}" \
	>"$tmp/out" 2>"$tmp/err" &
vm_pid=$!
trap 'kill -TERM "$vm_pid" 2>/dev/null; exit 143' TERM INT
seen_during_run=no
while kill -0 "$vm_pid" 2>/dev/null; do
	if all_written; then
		seen_during_run=yes
		touch "$tmp/ack"
		break
	fi
	sleep 0.2
done
rc=0
wait "$vm_pid" || rc=$?

check "in-vm exits with status 0 (writer, then the host's ack seen)" 0 "$rc"
check "guest: each file written through the mapping and read back" \
	"$(printf '%s: ok\n' "${files[@]}")" "$(<"$tmp/out")"
check "nothing on stderr (no guest death reported)" "" "$(<"$tmp/err")"
check "the host sees the bytes in every file while the guest still runs" yes "$seen_during_run"
for f in "${files[@]}"; do
	check "the host sees the child's and the parent's bytes in ${folder_of[$f]}" \
		"identical" "$(cmp -- "$tmp/expected" "$f" 2>&1 && echo identical)"
done

echo "$passed passed, $failed failed"
((failed == 0))
