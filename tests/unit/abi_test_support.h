// Fakes for the abi tests: memory the test builds in its own address space
// and registers region by region (reads outside them fail, as the kernel's
// would), and a visitor that records what the walker reports.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "abi/walk.h"

namespace dunk::abi::testing {

inline std::uint64_t addr_of(const void* p) { return reinterpret_cast<std::uint64_t>(p); }

class FakeMemory final : public Memory {
 public:
  // Makes [p, p + size) readable.
  void add(const void* p, std::size_t size) { regions_.push_back({addr_of(p), size}); }
  template <class T>
  void add(const T& object) {
    add(&object, sizeof object);
  }
  void add_string(const char* s) { add(s, std::strlen(s) + 1); }

  std::size_t read(std::uint64_t address, void* out, std::size_t size) noexcept override {
    ++reads;
    std::size_t done = 0;
    while (done < size) {
      const Region* r = find(address + done);
      if (r == nullptr) break;
      const std::size_t n = std::min<std::uint64_t>(size - done, r->start + r->size - (address + done));
      std::memcpy(static_cast<char*>(out) + done, reinterpret_cast<const void*>(address + done), n);
      done += n;
    }
    return done;
  }

  int reads = 0;

 private:
  struct Region {
    std::uint64_t start, size;
  };
  const Region* find(std::uint64_t a) const {
    for (const Region& r : regions_) {
      if (a >= r.start && a < r.start + r.size) return &r;
    }
    return nullptr;
  }
  std::vector<Region> regions_;
};

// What a test compares: one line per access or descriptor.
inline const char* dir_name(Dir d) {
  switch (d) {
    case Dir::kNone: return "none";
    case Dir::kRead: return "read";
    case Dir::kWrite: return "write";
    case Dir::kReadWrite: return "readwrite";
    case Dir::kAddressOnly: return "address";
  }
  return "?";
}

inline const char* role_name(FdRole r) {
  switch (r) {
    case FdRole::kUse: return "use";
    case FdRole::kDirFd: return "dirfd";
    case FdRole::kTarget: return "target";
    case FdRole::kRangeFirst: return "first";
    case FdRole::kRangeLast: return "last";
    case FdRole::kNew: return "new";
    case FdRole::kRemote: return "remote";
  }
  return "?";
}

// Names for the test's objects, so that an access prints as "buf+8".
class Labels {
 public:
  void add(const char* name, const void* p, std::size_t size) { labels_.push_back({name, addr_of(p), size}); }
  template <class T>
  void add(const char* name, const T& object) {
    add(name, &object, sizeof object);
  }
  std::string operator()(std::uint64_t a) const {
    for (const Label& l : labels_) {
      if (a >= l.start && a < l.start + (l.size ? l.size : 1)) return l.name + "+" + std::to_string(a - l.start);
    }
    char hex[32];
    std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(a));
    return hex;
  }

 private:
  struct Label {
    std::string name;
    std::uint64_t start, size;
  };
  std::vector<Label> labels_;
};

inline std::string where_text(const Location& w) {
  if (w.in_register()) return w.arg == Location::kReturnValue ? "ret" : "arg" + std::to_string(w.arg);
  return "#" + std::to_string(w.parent) + "+" + std::to_string(w.offset);
}

// Records in walk order, as lines a test compares exactly:
//   "#0 read iov+0 32 at arg1"         an access: id, direction, where it
//                                       is, size, where its pointer is
//   "... written 5", "... async", "... nul"
//   "fd 3 use at arg0"                 a descriptor
// Given the memory to copy from, the visitor copies every access and hands
// the copy back, as a sandbox does.
class Recorder final : public Visitor {
 public:
  explicit Recorder(const Labels& labels, Memory* copy_from = nullptr) : labels_(labels), copy_from_(copy_from) {}

  const void* access(const Access& a) noexcept override {
    accesses.push_back(a);
    std::string line = "#" + std::to_string(a.id) + " " + dir_name(a.dir) + " " + labels_(a.address) + " " +
                       std::to_string(a.size) + " at " + where_text(a.where);
    if (a.written != 0) line += " written " + std::to_string(a.written);
    if (a.async()) line += " async";
    if (a.remote()) line += " remote";
    if ((a.flags & kFollowedLater) != 0) line += " later";
    if ((a.flags & kChildWrites) != 0) line += " child";
    if (a.terminator == Terminator::kNul) line += " nul";
    if (a.terminator == Terminator::kNullPointer) line += " null";
    lines.push_back(line);
    if (copy_from_ == nullptr || a.dir == Dir::kAddressOnly) return nullptr;
    copies.emplace_back(a.size);
    copy_from_->read(a.address, copies.back().data(), a.size);
    return copies.back().data();
  }
  void fd(const FdUse& u) noexcept override {
    fds.push_back(u);
    lines.push_back("fd " + std::to_string(u.fd) + " " + role_name(u.role) + " at " + where_text(u.where));
  }

  std::vector<Access> accesses;
  std::vector<FdUse> fds;
  std::vector<std::string> lines;
  std::vector<std::vector<std::byte>> copies;

 private:
  const Labels& labels_;
  Memory* copy_from_;
};

inline std::ostream& operator<<(std::ostream& os, Completeness c) {
  return os << (c == Completeness::kComplete ? "complete" : c == Completeness::kDirectOnly ? "direct-only" : "incomplete");
}

}  // namespace dunk::abi::testing
