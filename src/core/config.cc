#include "core/config.h"

#include <cstdlib>
#include <cstring>

namespace dunk::core {
namespace {

// A number in `base` (0: C's prefixes) that is the whole of `text`.
bool parse(const char* text, long& value, int base = 10) noexcept {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  value = std::strtol(text, &end, base);
  return *end == '\0';
}

void copy_path(char (&to)[MachineConfig::kPathMax], const char* from) noexcept {
  if (from == nullptr || *from == '\0' || std::strlen(from) >= sizeof to) return;
  std::memcpy(to, from, std::strlen(from) + 1);
}

}  // namespace

MachineConfig MachineConfig::from_environment(Lookup lookup) noexcept {
  MachineConfig c;
  const char* trace = lookup("DUNK_TRACE");
  c.trace = trace != nullptr && *trace != '\0' && std::strcmp(trace, "0") != 0;
  long value;
  if (parse(lookup("DUNK_KVM_FD"), value) && value >= 0 && value <= 0x7fffffff) c.inherited_kvm_fd = static_cast<int>(value);
  copy_path(c.kvm_device, lookup("DUNK_KVM_DEVICE"));
  if (parse(lookup("DUNK_MAX_VCPUS"), value) && value > 0 && value <= 0xffffff) c.max_vcpus = static_cast<unsigned>(value);
  if (parse(lookup("DUNK_GPA_BITS"), value) && value >= 32 && value <= 52) c.gpa_bits = static_cast<unsigned>(value);
  if (parse(lookup("DUNK_REQUIRE_KVM_CAP"), value, 0) && value >= 0) c.required_capability = value;
  copy_path(c.stats_path, lookup("DUNK_STATS"));
  if (parse(lookup("DUNK_STRACE_FD"), value) && value >= 0 && value <= 0x7fffffff) c.strace_fd = static_cast<int>(value);
  copy_path(c.gdb_address, lookup("DUNK_GDB"));
  return c;
}

MachineConfig MachineConfig::from_environment() noexcept {
  return from_environment([](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace dunk::core
