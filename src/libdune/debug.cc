// dune_dump_trap_frame: what a handler had in front of it, for a human. It
// uses dune_printf (no stdio lock) and reads only memory the page tables
// map, so it works from a handler whatever the interrupted code held.
#include <cstdint>

#include "libdune/internal.h"

namespace {

constexpr int kStackWords = 12;
constexpr int kCodeBytes = 20;

bool readable(const void* p, std::size_t size) {
  const auto first = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{PGMASK};
  const auto last = (reinterpret_cast<std::uintptr_t>(p) + size - 1) & ~std::uintptr_t{PGMASK};
  for (std::uintptr_t page = first;; page += PGSIZE) {
    if (!dunk::AddressSpace::current().lookup(reinterpret_cast<const void*>(page))) return false;
    if (page == last) return true;
  }
}

void dump_bytes(const char* label, const unsigned char* p, int n) {
  char line[3 * kCodeBytes + 1];
  if (!readable(p, static_cast<std::size_t>(n))) {
    dune_printf("dune: %s\t(not mapped)\n", label);
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  int at = 0;
  for (int i = 0; i < n; ++i) {
    line[at++] = kHex[p[i] >> 4];
    line[at++] = kHex[p[i] & 0xf];
    line[at++] = ' ';
  }
  line[at] = '\0';
  dune_printf("dune: %s\t%s\n", label, line);
}

}  // namespace

extern "C" void dune_dump_trap_frame(struct dune_tf* tf) {
  dune_printf("dune: --- trap frame ---\n");
  dune_printf("dune: RIP 0x%016lx CS 0x%02x SS 0x%02x\n", static_cast<unsigned long>(tf->rip), tf->cs, tf->ss);
  dune_printf("dune: ERR 0x%08x RFLAGS 0x%08lx\n", tf->err, static_cast<unsigned long>(tf->rflags));
  const struct {
    const char* a;
    std::uint64_t av;
    const char* b;
    std::uint64_t bv;
  } pairs[] = {{"RAX", tf->rax, "RCX", tf->rcx}, {"RDX", tf->rdx, "RBX", tf->rbx}, {"RSP", tf->rsp, "RBP", tf->rbp},
               {"RSI", tf->rsi, "RDI", tf->rdi}, {"R8 ", tf->r8, "R9 ", tf->r9},     {"R10", tf->r10, "R11", tf->r11},
               {"R12", tf->r12, "R13", tf->r13}, {"R14", tf->r14, "R15", tf->r15}};
  for (const auto& p : pairs) {
    dune_printf("dune: %s 0x%016lx %s 0x%016lx\n", p.a, static_cast<unsigned long>(p.av), p.b,
                static_cast<unsigned long>(p.bv));
  }
  const auto* sp = reinterpret_cast<const std::uint64_t*>(tf->rsp);
  for (int i = 0; i < kStackWords; ++i) {
    if (!readable(&sp[i], sizeof sp[i])) {
      dune_printf("dune: RSP%+-4d (not mapped)\n", i * 8);
      break;
    }
    dune_printf("dune: RSP%+-4d 0x%016lx\n", i * 8, static_cast<unsigned long>(sp[i]));
  }
  const auto* ip = reinterpret_cast<const unsigned char*>(tf->rip);
  dump_bytes("code before RIP", ip - kCodeBytes, kCodeBytes);
  dump_bytes("code at RIP", ip, kCodeBytes);
  dune_printf("dune: --- end of trap frame ---\n");
}
