// Page-table memory for unit tests: posix_memalign'ed pages with made-up
// guest-physical addresses (arch::TableMemory), shared by the tests of the
// page-table code and of what is built on it.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "arch/x86_64/page_table.h"

namespace dunk::arch {

// Tables in posix_memalign'ed pages with made-up GPAs handed out in order
// from `gpa_base`. Counts everything, can be told to fail, and frees a table
// on release so a use after release is caught by table_at() (and ASan).
class FakeTableMemory final : public TableMemory {
 public:
  explicit FakeTableMemory(std::uint64_t gpa_base = 0x10'0000) : next_gpa_(gpa_base) {}
  ~FakeTableMemory() {
    for (auto& [gpa, p] : live_) std::free(p);
  }

  Result<TablePage> allocate() noexcept override {
    if (remaining_ == 0) return Error{"fake: out of table memory", ENOMEM};
    if (remaining_ > 0) --remaining_;
    void* p = nullptr;
    if (posix_memalign(&p, 4096, 4096) != 0) return Error{"posix_memalign failed", ENOMEM};
    std::memset(p, 0, 4096);
    const Gpa gpa(next_gpa_);
    next_gpa_ += 4096;
    live_[gpa.value()] = p;
    links_[gpa.value()] = 1;
    ++allocations;
    return TablePage{static_cast<PageTableEntry*>(p), gpa};
  }

  void release(TablePage page) noexcept override {
    auto it = live_.find(page.gpa.value());
    if (it == live_.end() || it->second != page.entries) {
      ++bad_releases;
      return;
    }
    if (links_[page.gpa.value()] != 0) ++bad_releases;  // released while still linked
    std::free(it->second);
    live_.erase(it);
    links_.erase(page.gpa.value());
    ++releases;
  }

  std::uint32_t* links(Gpa gpa) noexcept override {
    auto it = links_.find(gpa.value());
    return it == links_.end() ? nullptr : &it->second;
  }
  void unlinked(TablePage) noexcept override { ++unlinks; }

  PageTableEntry* table_at(Gpa gpa) noexcept override {
    auto it = live_.find(gpa.value());
    return it == live_.end() ? nullptr : static_cast<PageTableEntry*>(it->second);
  }

  // Allow `n` more allocations, then fail; -1 = unlimited.
  void fail_after(int n) { remaining_ = n; }
  std::size_t live() const { return live_.size(); }
  bool is_live(Gpa gpa) const { return live_.count(gpa.value()) != 0; }

  int allocations = 0;
  int releases = 0;
  int bad_releases = 0;
  int unlinks = 0;  // links dropped to tables that others still link

 private:
  std::uint64_t next_gpa_;
  int remaining_ = -1;
  std::map<std::uint64_t, void*> live_;
  std::map<std::uint64_t, std::uint32_t> links_;
};

}  // namespace dunk::arch
