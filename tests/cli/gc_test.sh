#!/usr/bin/env bash
# The Boehm collector under `dunk exec` (kvm tier): Debian's libgc, unmodified,
# finds the pages its program wrote through /proc/self/pagemap's soft-dirty
# bit, which dunk serves from its dirty bits (docs/GC.md); the program
# (dunk-gcbench) computes the same results as natively and checks them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

gcbench() {
	local bench
	bench=$(dirname "$DUNK")/dunk-gcbench
	[[ -x $bench ]] || fail "dunk-gcbench was not built (Debian's libgc-dev: scripts/setup installs it)"
	echo "$bench"
}

test_incremental_collection_uses_dunks_dirty_bits() {
	local bench native
	bench=$(gcbench)
	run_cmd env GC_ENABLE_INCREMENTAL=1 GC_USE_GETWRITEWATCH=0 "$bench" --depth 10 --file-mib 1 --label native
	expect_eq "native exit status" 0 "$STATUS"
	native=$OUT
	run_cmd env GC_ENABLE_INCREMENTAL=1 "$DUNK" exec -- "$bench" --depth 10 --file-mib 1 --label dunk
	expect_eq "exit status under dunk exec" 0 "$STATUS"
	"$PYTHON" - "$native" "$OUT" <<'PY' || fail "native: $native; under dunk exec: $OUT"
import json, sys
native, dunk = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert native["checks_failed"] == 0 and dunk["checks_failed"] == 0
assert dunk["incremental"] is True, dunk
# Incremental with a dirty-page source that does not protect pages: the
# soft-dirty interface, answered by dunk.
assert dunk["dirty_pages_by"] == "soft-dirty", dunk
assert dunk["result"] == native["result"], (native["result"], dunk["result"])
assert dunk["collections"] > 0, dunk
PY
}

main "$@"
