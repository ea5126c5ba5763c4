#!/usr/bin/env bash
# The layering of docs/ARCHITECTURE.md is enforced by the build: each layer
# compiles against an include root of its own (cmake/Layers.cmake). This
# compiles one-line files against those roots: what a layer may include
# must compile, an upward include must fail to.
#   layering_test.sh CXX LAYERS_DIR
set -euo pipefail
cxx=$1
layers=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# expect LAYER allow|deny HEADER
expect() {
  local layer=$1 want=$2 header=$3
  printf '#include "%s"\n' "$header" > "$work/probe.cc"
  if "$cxx" -std=c++20 -fsyntax-only -I "$layers/$layer" "$work/probe.cc" 2> "$work/err"; then
    got=allow
  else
    got=deny
  fi
  if [[ $got != "$want" ]]; then
    echo "FAIL: layer $layer including $header: expected $want, got $got"
    [[ $got == deny ]] && head -3 "$work/err"
    failures=$((failures + 1))
  else
    echo "ok: layer $layer $want $header"
  fi
}

for layer in base arch abi kvm guest core debug priv sandbox libdune sthread; do
  [[ -d $layers/$layer ]] || { echo "FAIL: no include root for layer $layer in $layers"; exit 1; }
done

# Each layer sees itself and the vocabulary headers.
expect base allow base/syscall.h
expect base allow dunk/result.h
expect arch allow arch/x86_64/page_table.h
expect abi allow abi/signal.h
expect kvm allow kvm/kvm.h
expect guest allow guest/abi.h
expect guest allow dunk/trap_frame.h
expect core allow core/monitor.h
expect debug allow debug/gdb_session.h
expect priv allow priv/internal.h
expect sandbox allow sandbox/policy.h
expect libdune allow libdune/internal.h
expect libdune allow libdune/dune.h
expect libdune allow kern/dune.h
expect sthread allow sthread/internal.h
expect sthread allow sthread/sthread.h

# Downward includes the diagram allows.
expect abi allow arch/x86_64/registers.h
expect kvm allow base/unique_fd.h
expect core allow guest/abi.h
expect core allow kvm/kvm.h
expect core allow dunk/dunk.h
expect debug allow core/debug_link.h
expect debug allow core/machine.h
expect debug allow kvm/kvm.h
expect debug allow arch/x86_64/debug_registers.h
expect priv allow core/mirror.h
expect priv allow dunk/paging.h
expect sandbox allow abi/signal.h
expect sandbox allow base/syscall.h
expect libdune allow dunk/paging.h
expect libdune allow dunk/traps.h
expect libdune allow base/proc_maps.h
expect sthread allow dunk/sthread.h
expect sthread allow dunk/ring3.h
expect sthread allow abi/walk.h
expect sthread allow base/lock.h

# Upward and sideways includes, each of which must fail to compile.
expect base deny arch/x86_64/registers.h
expect arch deny base/syscall.h
expect arch deny kvm/kvm.h
expect kvm deny arch/x86_64/registers.h
expect kvm deny core/machine.h
expect guest deny core/machine.h
expect guest deny dunk/traps.h
expect guest deny dunk/interrupts.h
expect guest deny kvm/kvm.h
expect abi deny core/signals.h
expect core deny priv/internal.h
expect core deny dunk/paging.h
expect core deny dunk/traps.h
expect core deny sandbox/policy.h
expect core deny debug/gdb_server.h
expect debug deny priv/internal.h
expect debug deny dunk/traps.h
expect debug deny sandbox/policy.h
# The sandbox's runtime runs the program in ring 3 on the machine and
# priv's ring-3 switch; it sees neither the debugger, libdune nor sthreads.
expect sandbox allow core/machine.h
expect sandbox allow kvm/kvm.h
expect sandbox allow priv/internal.h
expect sandbox deny debug/gdb_session.h
expect sandbox deny libdune/internal.h
expect sandbox deny sthread/internal.h
expect libdune deny priv/internal.h
expect libdune deny core/mirror.h
expect libdune deny guest/abi.h
expect libdune deny kvm/kvm.h
expect libdune deny sandbox/policy.h
expect priv deny libdune/dune.h
expect core deny libdune/internal.h
expect sthread deny priv/internal.h
expect sthread deny core/mirror.h
expect sthread deny core/machine.h
expect sthread deny guest/abi.h
expect sthread deny kvm/kvm.h
expect sthread deny libdune/dune.h
expect priv deny sthread/internal.h
expect libdune deny dunk/sthread.h

if ((failures > 0)); then
  echo "$failures layering check(s) failed"
  exit 1
fi
echo "all layering checks passed"
