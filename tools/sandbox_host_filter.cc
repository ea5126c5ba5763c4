#include "tools/sandbox_host_filter.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <memory>

namespace dunk::cli {

std::vector<std::uint64_t> host_filter_program(const std::vector<int>& calls, bool log, std::string& why) {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(log ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS),
                                                       seccomp_release);
  if (!ctx) {
    why = "seccomp_init failed";
    return {};
  }
  // The sandbox sets no_new_privs itself before it installs the program.
  int err = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (err == 0) err = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  for (int nr : calls) {
    if (err != 0) break;
    err = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0);
    if (err != 0) why = fmt::format("seccomp_rule_add(call {}) failed: {}", nr, std::strerror(-err));
  }
  if (err != 0) {
    if (why.empty()) why = fmt::format("seccomp_attr_set failed: {}", std::strerror(-err));
    return {};
  }
  const int fd = memfd_create("dunk-host-filter", MFD_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("memfd_create failed: {}", std::strerror(errno));
    return {};
  }
  std::vector<std::uint64_t> program;
  err = seccomp_export_bpf(ctx.get(), fd);
  const off_t size = lseek(fd, 0, SEEK_END);
  if (err == 0 && size >= 8 && size % 8 == 0) {
    const std::size_t bytes = static_cast<std::size_t>(size);
    program.resize(bytes / 8);
    if (pread(fd, program.data(), bytes, 0) != static_cast<ssize_t>(bytes)) program.clear();
  }
  close(fd);
  if (program.empty()) why = err != 0 ? fmt::format("seccomp_export_bpf failed: {}", std::strerror(-err)) : "an empty BPF program";
  return program;
}

}  // namespace dunk::cli
