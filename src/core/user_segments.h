// The FS and GS a program can see: their selectors and their bases.
//
// In VM mode these live in the vCPU (kvm_sregs, and the parked user GS base
// in MSR_KERNEL_GS_BASE); outside it in the host thread. A program that
// loads a selector itself (an LDT entry from modify_ldt, or one it read from
// another segment register) must find it again wherever it next runs: on
// the host after leaving VM mode (a ptrace tracer reads it there), and in a
// fork child's new VM. Linux's rules, which these functions follow: loading
// a selector sets the base from its descriptor; ARCH_SET_FS/GS sets the base
// and makes the selector null (arch/x86/kernel/process_64.c); with
// FSGSBASE, WRFSBASE/WRGSBASE set the base and leave the selector.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

namespace dunk::core {

struct UserSegments {
  std::uint16_t fs_selector = 0;
  std::uint16_t gs_selector = 0;
  std::uint64_t fs_base = 0;
  std::uint64_t gs_base = 0;
};

// A selector that names no descriptor (index 0 of the GDT, any RPL).
constexpr bool is_null_selector(std::uint16_t selector) noexcept { return (selector & ~3U) == 0; }

// FS and GS as a vCPU holds them: the selectors and FS base from `sregs`,
// the GS base given (in dunk's entry code it is parked in
// MSR_KERNEL_GS_BASE, and sregs.gs.base is dunk's).
UserSegments vcpu_user_segments(const kvm_sregs& sregs, std::uint64_t user_gs_base) noexcept;

// What the program would hold natively for what it holds in VM mode: dunk's
// ring-0 data selector (which a program reads from SS at CPL 0) becomes the
// user data selector it stands for; any other selector is the same on both
// sides (dunk's GDT has Linux's user selectors, and the LDT is mirrored).
UserSegments native_view(const UserSegments& vm) noexcept;

// The host thread's FS and GS now.
UserSegments host_user_segments() noexcept;

// Gives the host thread `s`: a non-null selector is loaded when the host
// accepts it (VERR: present and readable at CPL 3; else the selector is
// null), then the base is written (WRFSBASE/WRGSBASE where the kernel
// enabled them; without them a loaded selector keeps its descriptor's base,
// which is the only base it can have natively). Monitor rules: no libc.
void load_host_user_segments(const UserSegments& s) noexcept;

// Sets FS and GS of `sregs` to `s` as the vCPU loads them: a non-null
// selector gets a present DPL-3 writable data segment, a null one the null
// segment dunk's vCPUs start with; both get their base.
void set_vcpu_user_segments(kvm_sregs& sregs, const UserSegments& s) noexcept;

}  // namespace dunk::core
