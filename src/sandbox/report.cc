#include "sandbox/report.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/syscall.h"

namespace dunk::sandbox {
namespace {

// The longest line a report takes (the arguments are cut before this).
constexpr std::size_t kLineMax = 8192;

}  // namespace

void Reporter::append(const char* text) noexcept {
  const std::size_t n = std::strlen(text);
  if (used_ + n > kBuffer) flush_locked();
  const std::size_t take = n < kBuffer - used_ ? n : kBuffer - used_;
  std::memcpy(buffer_ + used_, text, take);
  used_ += take;
}

void Reporter::append_json(const char* key, const char* value) noexcept {
  if (value == nullptr) return;
  char piece[kLineMax];
  std::size_t n = 0;
  auto put = [&](char c) {
    if (n + 1 < sizeof piece) piece[n++] = c;
  };
  if (!first_field_) put(',');
  first_field_ = false;
  put('"');
  for (const char* k = key; *k != '\0'; ++k) put(*k);
  put('"');
  put(':');
  put('"');
  for (const unsigned char* v = reinterpret_cast<const unsigned char*>(value); *v != '\0'; ++v) {
    if (*v == '"' || *v == '\\') {
      put('\\');
      put(static_cast<char>(*v));
    } else if (*v < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", *v);
      for (const char* e = escape; *e != '\0'; ++e) put(*e);
    } else {
      put(static_cast<char>(*v));
    }
  }
  put('"');
  piece[n] = '\0';
  append(piece);
}

void Reporter::append_json(const char* key, std::int64_t value) noexcept {
  char piece[96];
  std::snprintf(piece, sizeof piece, "%s\"%s\":%" PRId64, first_field_ ? "" : ",", key, value);
  first_field_ = false;
  append(piece);
}

void Reporter::add(const ReportLine& r) noexcept {
  LockGuard hold(lock_);
  if (format_ == LogFormat::kJson) {
    first_field_ = true;
    append("{");
    append_json("event", r.event);
    append_json("call", r.call);
    if (r.nr >= 0) append_json("nr", r.nr);
    append_json("args", r.args);
    append_json("answer", r.answer);
    append_json("action", r.action);
    append_json("rule", r.rule);
    append_json("detail", r.detail);
    append_json("pid", static_cast<std::int64_t>(pid_));
    append_json("tid", r.tid);
    char rip[24];
    std::snprintf(rip, sizeof rip, "0x%" PRIx64, r.rip);
    append_json("rip", rip);
    append("}\n");
    return;
  }
  char line[kLineMax];
  int n = std::snprintf(line, sizeof line, "dunk sandbox: %s", r.event);
  auto more = [&](const char* format, auto... values) {
    if (n >= 0 && static_cast<std::size_t>(n) < sizeof line) {
      n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), format, values...);
    }
  };
  if (r.call != nullptr) more(" %s(%s)", r.call, r.args != nullptr ? r.args : "");
  if (r.answer != nullptr) more(" -> %s", r.answer);
  if (r.rule != nullptr) more(" by %s", r.rule);
  if (r.detail != nullptr) more(": %s", r.detail);
  more(" [pid %ld tid %" PRId64 " rip 0x%" PRIx64 "]\n", pid_, r.tid, r.rip);
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof line) {
    line[sizeof line - 2] = '\n';
    line[sizeof line - 1] = '\0';
  }
  append(line);
}

void Reporter::flush() noexcept {
  LockGuard hold(lock_);
  flush_locked();
}

bool Reporter::flush_if_free(int attempts) noexcept {
  for (int i = 0; i < attempts; ++i) {
    if (lock_.try_lock()) {
      flush_locked();
      lock_.unlock();
      return true;
    }
    // 1 ms on a futex word nobody wakes (futex is among dunk's host calls).
    const std::uint32_t never = 0;
    const timespec pause{0, 1'000'000};
    sys::call(SYS_futex, reinterpret_cast<long>(&never), FUTEX_WAIT_PRIVATE, 0, reinterpret_cast<long>(&pause));
  }
  return false;
}

void Reporter::flush_locked() noexcept {
  std::size_t done = 0;
  while (done < used_) {
    const long n = sys::call(SYS_write, fd_, reinterpret_cast<long>(buffer_ + done), static_cast<long>(used_ - done));
    if (n == -EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  used_ = 0;
}

}  // namespace dunk::sandbox
