#include "base/proc_maps.h"

#include <fcntl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>

#include "base/syscall.h"

namespace dunk {
namespace {

constexpr std::string_view kDeletedSuffix = " (deleted)";

// Reads one maps line left to right; every step fails on the first
// character it does not expect.
class Cursor {
 public:
  explicit Cursor(std::string_view text) noexcept : text_(text) {}

  bool hex(std::uint64_t& out, std::size_t max_digits) noexcept {
    std::size_t n = 0;
    out = 0;
    while (n < text_.size() && n <= max_digits) {
      const int digit = hex_digit(text_[n]);
      if (digit < 0) break;
      out = (out << 4) | static_cast<std::uint64_t>(digit);
      ++n;
    }
    return consume_digits(n, max_digits);
  }

  bool decimal(std::uint64_t& out) noexcept {
    std::size_t n = 0;
    out = 0;
    while (n < text_.size() && text_[n] >= '0' && text_[n] <= '9') {
      const std::uint64_t digit = static_cast<std::uint64_t>(text_[n] - '0');
      if (out > (UINT64_MAX - digit) / 10) return false;
      out = out * 10 + digit;
      ++n;
    }
    return consume_digits(n, 20);
  }

  bool expect(char c) noexcept {
    if (text_.empty() || text_.front() != c) return false;
    text_.remove_prefix(1);
    return true;
  }

  // One of two characters; sets `on` when it was `yes`.
  bool flag(char yes, char no, bool& on) noexcept {
    if (text_.empty() || (text_.front() != yes && text_.front() != no)) return false;
    on = text_.front() == yes;
    text_.remove_prefix(1);
    return true;
  }

  void skip_spaces() noexcept {
    while (!text_.empty() && text_.front() == ' ') text_.remove_prefix(1);
  }
  bool done() const noexcept { return text_.empty(); }
  std::string_view rest() const noexcept { return text_; }

 private:
  static int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool consume_digits(std::size_t n, std::size_t max_digits) noexcept {
    if (n == 0 || n > max_digits) return false;
    text_.remove_prefix(n);
    return true;
  }

  std::string_view text_;
};

bool parse_range(Cursor& c, MapEntry& e) noexcept {
  std::uint64_t start = 0, end = 0;
  if (!c.hex(start, 16) || !c.expect('-') || !c.hex(end, 16) || start > end) return false;
  e.start = Hva(start);
  e.end = Hva(end);
  return true;
}

bool parse_perms(Cursor& c, MapEntry& e) noexcept {
  return c.flag('r', '-', e.read) && c.flag('w', '-', e.write) && c.flag('x', '-', e.exec) &&
         c.flag('s', 'p', e.shared);
}

bool parse_device(Cursor& c, MapEntry& e) noexcept {
  std::uint64_t major = 0, minor = 0;
  if (!c.hex(major, 8) || !c.expect(':') || !c.hex(minor, 8)) return false;
  e.dev_major = static_cast<std::uint32_t>(major);
  e.dev_minor = static_cast<std::uint32_t>(minor);
  return true;
}

// After the inode: nothing (anonymous), or padding spaces and the path.
bool parse_path(Cursor& c, MapEntry& e) noexcept {
  if (c.done()) return true;
  if (!c.expect(' ')) return false;
  c.skip_spaces();
  std::string_view path = c.rest();
  if (path.size() > kDeletedSuffix.size() && path.ends_with(kDeletedSuffix)) {
    path.remove_suffix(kDeletedSuffix.size());
    e.deleted = true;
  }
  e.path = path;
  return true;
}

}  // namespace

std::optional<MapEntry> parse_maps_line(std::string_view line) noexcept {
  Cursor c(line);
  MapEntry e;
  if (!parse_range(c, e) || !c.expect(' ')) return std::nullopt;
  if (!parse_perms(c, e) || !c.expect(' ')) return std::nullopt;
  if (!c.hex(e.offset, 16) || !c.expect(' ')) return std::nullopt;
  if (!parse_device(c, e) || !c.expect(' ')) return std::nullopt;
  if (!c.decimal(e.inode) || !parse_path(c, e)) return std::nullopt;
  return e;
}

// --- MapsReader -------------------------------------------------------------

Status MapsReader::open(const char* path) noexcept {
  const long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
  if (sys::failed(fd)) return errno_error("openat(maps file) failed", fd);
  owned_.reset(static_cast<int>(fd));
  return start(static_cast<int>(fd));
}

Status MapsReader::read_from(int fd) noexcept {
  owned_.reset();
  return start(fd);
}

Status MapsReader::start(int fd) noexcept {
  if (buffer_ == nullptr || size_ < kMinBuffer) return Error{"MapsReader: buffer smaller than kMinBuffer", EINVAL};
  fd_ = fd;
  begin_ = end_ = 0;
  eof_ = discarding_ = false;
  malformed_ = 0;
  status_ = Status();
  return {};
}

// Moves the unconsumed data to the front and appends what read() returns.
// False at end of file or on error (then status_ holds it).
bool MapsReader::fill() noexcept {
  if (begin_ > 0) {
    std::memmove(buffer_, buffer_ + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  for (;;) {
    const long n = sys::call(SYS_read, fd_, reinterpret_cast<long>(buffer_ + end_), static_cast<long>(size_ - end_));
    if (n == -EINTR) continue;
    if (sys::failed(n)) status_ = errno_error("read(maps file) failed", n);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    end_ += static_cast<std::size_t>(n);
    return true;
  }
}

// Drops input up to and including the next newline.
bool MapsReader::skip_rest_of_line() noexcept {
  for (;;) {
    const void* nl = std::memchr(buffer_ + begin_, '\n', end_ - begin_);
    if (nl != nullptr) {
      begin_ = static_cast<std::size_t>(static_cast<const char*>(nl) - buffer_) + 1;
      discarding_ = false;
      return true;
    }
    begin_ = end_ = 0;
    if (eof_ || !fill()) return false;
  }
}

std::optional<std::string_view> MapsReader::take_line(bool& truncated) noexcept {
  truncated = false;
  if (fd_ < 0) return std::nullopt;
  if (discarding_ && !skip_rest_of_line()) return std::nullopt;
  for (;;) {
    const char* data = buffer_ + begin_;
    const std::size_t avail = end_ - begin_;
    if (const void* nl = std::memchr(data, '\n', avail)) {
      const auto length = static_cast<std::size_t>(static_cast<const char*>(nl) - data);
      begin_ += length + 1;
      return std::string_view(data, length);
    }
    if (avail == size_ || (eof_ && avail > 0)) {
      // A line longer than the buffer, or the last line without a newline.
      truncated = !eof_;
      discarding_ = !eof_;
      begin_ = end_;
      return std::string_view(data, avail);
    }
    if (eof_ || !fill()) {
      if (end_ == begin_) return std::nullopt;
    }
  }
}

bool MapsReader::next(MapEntry& entry) noexcept {
  for (;;) {
    bool truncated = false;
    const std::optional<std::string_view> line = take_line(truncated);
    if (!line) return false;
    std::optional<MapEntry> parsed = parse_maps_line(*line);
    if (!parsed) {
      ++malformed_;
      continue;
    }
    if (truncated) {
      parsed->path_truncated = true;
      parsed->deleted = false;  // the suffix, if any, was cut off
    }
    entry = *parsed;
    return true;
  }
}

}  // namespace dunk
