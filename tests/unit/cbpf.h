// A classic-BPF interpreter for seccomp programs, for tests that compare
// dunk's policy engine with the filter libseccomp generates: it runs the
// program over a struct seccomp_data the way the kernel does, without
// installing anything. It knows the instructions a seccomp filter may use
// (loads of the data, the scratch memory, ALU, jumps, returns) and reports
// anything else as a failure instead of guessing.
#pragma once

#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace dunk::test {

class Cbpf {
 public:
  explicit Cbpf(std::span<const sock_filter> program) : program_(program) {}

  // The filter's return value, or nullopt for a program the kernel would
  // have refused at load time (an unknown instruction, a load outside the
  // data, a jump past the end) — which fails the comparison.
  std::optional<std::uint32_t> run(const seccomp_data& data) const {
    std::uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
    for (std::size_t pc = 0; pc < program_.size(); ++pc) {
      const sock_filter& in = program_[pc];
      const std::uint32_t src = BPF_SRC(in.code) == BPF_X ? x : in.k;
      switch (BPF_CLASS(in.code)) {
        case BPF_LD:
          if (in.code == (BPF_LD | BPF_W | BPF_ABS)) {
            if (in.k % 4 != 0 || in.k + 4 > sizeof data) return std::nullopt;
            std::memcpy(&a, reinterpret_cast<const char*>(&data) + in.k, 4);
          } else if (in.code == (BPF_LD | BPF_IMM)) {
            a = in.k;
          } else if (in.code == (BPF_LD | BPF_MEM) && in.k < BPF_MEMWORDS) {
            a = mem[in.k];
          } else if (in.code == (BPF_LD | BPF_W | BPF_LEN)) {
            a = sizeof data;
          } else {
            return std::nullopt;
          }
          break;
        case BPF_LDX:
          if (in.code == (BPF_LDX | BPF_IMM)) {
            x = in.k;
          } else if (in.code == (BPF_LDX | BPF_MEM) && in.k < BPF_MEMWORDS) {
            x = mem[in.k];
          } else if (in.code == (BPF_LDX | BPF_W | BPF_LEN)) {
            x = sizeof data;
          } else {
            return std::nullopt;
          }
          break;
        case BPF_ST:
          if (in.k >= BPF_MEMWORDS) return std::nullopt;
          mem[in.k] = a;
          break;
        case BPF_STX:
          if (in.k >= BPF_MEMWORDS) return std::nullopt;
          mem[in.k] = x;
          break;
        case BPF_ALU:
          switch (BPF_OP(in.code)) {
            case BPF_ADD: a += src; break;
            case BPF_SUB: a -= src; break;
            case BPF_MUL: a *= src; break;
            case BPF_DIV:
              if (src == 0) return 0;  // the kernel's answer: the filter returns 0
              a /= src;
              break;
            case BPF_MOD:
              if (src == 0) return 0;
              a %= src;
              break;
            case BPF_AND: a &= src; break;
            case BPF_OR: a |= src; break;
            case BPF_XOR: a ^= src; break;
            case BPF_LSH: a = src >= 32 ? 0 : a << src; break;
            case BPF_RSH: a = src >= 32 ? 0 : a >> src; break;
            case BPF_NEG: a = -a; break;
            default: return std::nullopt;
          }
          break;
        case BPF_JMP: {
          if (BPF_OP(in.code) == BPF_JA) {
            pc += in.k;
            break;
          }
          bool taken = false;
          switch (BPF_OP(in.code)) {
            case BPF_JEQ: taken = a == src; break;
            case BPF_JGT: taken = a > src; break;
            case BPF_JGE: taken = a >= src; break;
            case BPF_JSET: taken = (a & src) != 0; break;
            default: return std::nullopt;
          }
          pc += taken ? in.jt : in.jf;
          break;
        }
        case BPF_RET:
          return BPF_RVAL(in.code) == BPF_A ? a : in.k;
        case BPF_MISC:
          if (BPF_MISCOP(in.code) == BPF_TAX) {
            x = a;
          } else if (BPF_MISCOP(in.code) == BPF_TXA) {
            a = x;
          } else {
            return std::nullopt;
          }
          break;
        default:
          return std::nullopt;
      }
    }
    return std::nullopt;  // ran off the end: the kernel refuses such programs
  }

 private:
  std::span<const sock_filter> program_;
};

}  // namespace dunk::test
