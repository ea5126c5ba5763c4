#include "bench/seccomp_policy.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>

#include "sandbox/compile.h"
#include "sandbox/libseccomp_values.h"
#include "sandbox/policy.h"

namespace dunk::bench {
namespace {

using sandbox::Action;
using sandbox::Compare;
using sandbox::libseccomp_action;
using sandbox::libseccomp_compare;

// The exported program of `ctx`, read back through a memfd.
std::vector<sock_filter> export_bpf(scmp_filter_ctx ctx, std::string& why) {
  const int fd = memfd_create("dunk-bench-bpf", MFD_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("memfd_create failed: {}", std::strerror(errno));
    return {};
  }
  std::vector<sock_filter> program;
  const int err = seccomp_export_bpf(ctx, fd);
  const off_t size = lseek(fd, 0, SEEK_END);
  const std::size_t count = size > 0 ? static_cast<std::size_t>(size) / sizeof(sock_filter) : 0;
  if (err == 0 && count > 0 && static_cast<std::size_t>(size) == count * sizeof(sock_filter)) {
    program.resize(count);
    const std::size_t bytes = count * sizeof(sock_filter);
    if (pread(fd, program.data(), bytes, 0) != static_cast<ssize_t>(bytes)) program.clear();
  }
  close(fd);
  if (program.empty()) {
    why = err != 0 ? fmt::format("seccomp_export_bpf failed: {}", std::strerror(-err)) : "an empty BPF program";
  }
  return program;
}

}  // namespace

std::vector<sock_filter> policy_bpf(std::string_view json, std::string& why) {
  sandbox::SourcePolicy policy;
  if (!sandbox::read_source_policy(json, sandbox::LoadOptions::for_this_process("policy"), policy, why)) return {};
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(
      seccomp_init(libseccomp_action(policy.default_action, policy.default_err)), seccomp_release);
  if (!ctx) {
    why = "seccomp_init failed";
    return {};
  }
  int err = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (err == 0 && policy.log_flag) err = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_LOG, 1);
  if (err != 0) {
    why = fmt::format("seccomp_attr_set failed: {}", std::strerror(-err));
    return {};
  }
  for (const sandbox::SourceRule& r : policy.rules) {
    // runc leaves out the rules that say what the default says.
    if (r.action == policy.default_action && r.err == policy.default_err) continue;
    std::vector<scmp_arg_cmp> cmps;
    for (const sandbox::Comparison& c : r.args) {
      cmps.push_back(scmp_arg_cmp{c.arg, libseccomp_compare(c.op), c.value, c.value_two});
    }
    for (int nr : r.numbers) {
      err = seccomp_rule_add_array(ctx.get(), libseccomp_action(r.action, r.err), nr,
                                   static_cast<unsigned>(cmps.size()), cmps.data());
      if (err != 0) {
        why = fmt::format("syscalls[{}] (call {}): libseccomp refused the rule: {}", r.index, nr, std::strerror(-err));
        return {};
      }
    }
  }
  return export_bpf(ctx.get(), why);
}

std::vector<sock_filter> every_call_bpf(std::uint32_t action) {
  return {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      // x32's numbers (bit 30) are another ABI too.
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x40000000, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, action),
  };
}

long install_bpf(const std::vector<sock_filter>& program, unsigned flags) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
  sock_fprog prog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
  const long ret = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  return ret < 0 ? -errno : ret;
}

}  // namespace dunk::bench
