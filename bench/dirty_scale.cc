// Dirty-page tracking at scale: a 1 GiB region, 1% of its pages written per
// round, found again and cleaned in one pass, four ways side by side — dunk's
// dirty bits (DirtyTracker, VM mode), the kernel's soft-dirty bits
// (/proc/self/clear_refs + /proc/self/pagemap), userfaultfd write-protection
// and mprotect + SIGSEGV. Every round of every way must find exactly the
// pages written; a way that does not fails the run (Report::failures).
//
// Two patterns: the written pages spread over the whole region (every 2 MiB
// of it touched: the worst case for dunk's pruning by upper-level accessed
// bits), and the same number clustered in a few 2 MiB pieces. Then the scan
// alone over 64 MiB, 256 MiB, 1 GiB and 64 GiB with the same clustered
// pages: what it reads grows with what was touched, not with the region.
#include "bench/dirty_scale.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "bench/probes.h"
#include "dunk/dirty.h"
#include "dunk/dunk.h"

namespace dunk::bench {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kRegionBytes = std::size_t{1} << 30;
constexpr std::size_t kRegionPages = kRegionBytes / kPage;  // 262,144
constexpr std::size_t kWritten = kRegionPages / 100;         // 1%: 2,621
constexpr const char* kName = "dirty tracking 1 GiB, 1% written";
constexpr const char* kClusteredName = "dirty tracking 1 GiB, 1% written, clustered";

char* region = nullptr;
// The pages a round writes (sorted page indices), and what a way found.
std::vector<std::uint32_t> written;
std::vector<std::uint32_t> found;
std::size_t mismatched_rounds = 0;
// Over the mismatched rounds: pages reported but not written, written but
// not reported (the latter is what a collector must never see), and the
// first page of each kind, to say where a wrong answer came from.
std::size_t extra_pages = 0, missing_pages = 0;
std::optional<std::uint32_t> first_extra, first_missing;

std::vector<std::uint32_t> spread_pages() {
  std::mt19937 rng(2026);
  std::vector<std::uint32_t> all(kRegionPages);
  for (std::uint32_t i = 0; i < kRegionPages; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<std::uint32_t> pages(all.begin(), all.begin() + kWritten);
  std::sort(pages.begin(), pages.end());
  return pages;
}

// The same number of pages in consecutive runs of 512 (whole 2 MiB pieces)
// placed through the region: 6 pieces (5 whole, one partial).
std::vector<std::uint32_t> clustered_pages(std::size_t region_pages) {
  std::vector<std::uint32_t> pages;
  const std::size_t pieces = (kWritten + 511) / 512;
  const std::size_t step = region_pages / 512 / pieces;
  for (std::size_t p = 0; pages.size() < kWritten; ++p) {
    for (std::uint32_t i = 0; i < 512 && pages.size() < kWritten; ++i) {
      pages.push_back(static_cast<std::uint32_t>(p * step * 512 + i));
    }
  }
  return pages;
}

void write_round(std::uint64_t round) {
  for (std::uint32_t page : written) {
    static_cast<volatile char*>(region)[std::size_t{page} * kPage + (round % 64) * 8] = static_cast<char>(round + 1);
  }
}

// Checks what a way found this round (page indices, any order).
void check_round() {
  std::sort(found.begin(), found.end());
  if (found != written) {
    ++mismatched_rounds;
    std::vector<std::uint32_t> extra, missing;
    std::set_difference(found.begin(), found.end(), written.begin(), written.end(), std::back_inserter(extra));
    std::set_difference(written.begin(), written.end(), found.begin(), found.end(), std::back_inserter(missing));
    extra_pages += extra.size();
    missing_pages += missing.size();
    if (!extra.empty() && !first_extra) first_extra = extra.front();
    if (!missing.empty() && !first_missing) first_missing = missing.front();
  }
  found.clear();
}

std::uint32_t page_index(const void* p) {
  return static_cast<std::uint32_t>((static_cast<const char*>(p) - region) / kPage);
}

// ---- the four ways ---------------------------------------------------------

std::optional<DirtyTracker> tracker;
// What the collects of the rounds did, summed (and kept from the measured run).
DirtyTracker::Pass pass_totals, measured_passes;

void dunk_prepare() {
  if (!tracker) {
    auto t = DirtyTracker::create(region, kRegionBytes);
    if (!t) return;
    tracker.emplace(std::move(*t));
  }
  tracker->reset();  // also after the leave() of the last measurement
  write_round(0);    // warm: KVM maps the written pages into the guest
  tracker->reset();
  pass_totals = {};
}

void dunk_round(std::uint64_t round) {
  write_round(round);
  tracker->collect_each([](void* page) { found.push_back(page_index(page)); });
  const DirtyTracker::Pass& p = tracker->last_pass();
  pass_totals.entries_read += p.entries_read;
  pass_totals.tables_skipped += p.tables_skipped;
  pass_totals.quiet = pass_totals.quiet && p.quiet;
  pass_totals.pruned = p.pruned;
  check_round();
}

int clear_refs_fd = -1, pagemap_fd = -1;
std::vector<std::uint64_t> pagemap_entries;

void soft_prepare() {
  pagemap_entries.resize(kRegionPages);
  (void)!pwrite(clear_refs_fd, "4", 1, 0);
  write_round(0);
  (void)!pwrite(clear_refs_fd, "4", 1, 0);
}

void soft_round(std::uint64_t round) {
  write_round(round);
  const off_t offset = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(region) / kPage * 8);
  const auto bytes = static_cast<ssize_t>(kRegionPages * 8);
  if (pread(pagemap_fd, pagemap_entries.data(), static_cast<std::size_t>(bytes), offset) != bytes) return;
  for (std::uint32_t i = 0; i < kRegionPages; ++i) {
    if ((pagemap_entries[i] >> 55) & 1) found.push_back(i);
  }
  (void)!pwrite(clear_refs_fd, "4", 1, 0);
  check_round();
}

// mprotect + SIGSEGV: write-protect the region, each first write traps and
// the handler records the page and opens it.
std::vector<std::uint32_t>* trapped = nullptr;
void record_write(int, siginfo_t* info, void*) {
  const auto page = reinterpret_cast<std::uintptr_t>(info->si_addr) & ~(kPage - 1);
  trapped->push_back(page_index(reinterpret_cast<void*>(page)));
  mprotect(reinterpret_cast<void*>(page), kPage, PROT_READ | PROT_WRITE);
}

void mprotect_prepare() {
  struct sigaction sa {};
  sa.sa_sigaction = record_write;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, nullptr);
  found.reserve(kWritten);
  trapped = &found;
  mprotect(region, kRegionBytes, PROT_READ);
  write_round(0);
  found.clear();
  mprotect(region, kRegionBytes, PROT_READ);
}

void mprotect_round(std::uint64_t round) {
  write_round(round);
  mprotect(region, kRegionBytes, PROT_READ);
  check_round();
}

void mprotect_done() {
  mprotect(region, kRegionBytes, PROT_READ | PROT_WRITE);
  signal(SIGSEGV, SIG_DFL);
}

// userfaultfd write-protection: a handler thread records each fault and
// unprotects its page, which wakes the writer.
int uffd = -1;
std::atomic<std::uint32_t> uffd_pages[kWritten + 64];
std::atomic<std::size_t> uffd_count{0};

int uffd_stop = -1;  // an eventfd: readable when the handler must end

void* uffd_handler(void*) {
  uffd_msg msg{};
  // A read blocked on the userfaultfd does not end when the descriptor is
  // closed: wait for either (the userfaultfd is non-blocking: poll reports
  // POLLERR for a blocking one, userfaultfd(2)).
  pollfd fds[2] = {{uffd, POLLIN, 0}, {uffd_stop, POLLIN, 0}};
  while (poll(fds, 2, -1) > 0 && (fds[1].revents & POLLIN) == 0) {
    if (read(uffd, &msg, sizeof msg) != static_cast<ssize_t>(sizeof msg)) continue;  // EAGAIN: woken meanwhile
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    const std::uintptr_t page = msg.arg.pagefault.address & ~(kPage - 1);
    const std::size_t at = uffd_count.fetch_add(1);
    if (at < kWritten + 64) uffd_pages[at].store(page_index(reinterpret_cast<void*>(page)));
    uffdio_writeprotect wp{};
    wp.range.start = page;
    wp.range.len = kPage;
    wp.mode = 0;  // unprotect, and wake the writer
    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
  }
  return nullptr;
}

bool uffd_protect() {
  uffdio_writeprotect wp{};
  wp.range.start = reinterpret_cast<std::uintptr_t>(region);
  wp.range.len = kRegionBytes;
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0;
}

// The process's threads as the kernel counts them.
long thread_count() {
  long n = 0;
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char line[1024] = {};
    if (std::fgets(line, sizeof line, f) != nullptr) {
      const char* after = std::strrchr(line, ')');
      // num_threads is the 18th field after the name (proc(5)).
      for (int field = 0; after != nullptr && field < 18; ++field) after = std::strchr(after + 1, ' ');
      if (after != nullptr) n = std::strtol(after + 1, nullptr, 10);
    }
    std::fclose(f);
  }
  return n;
}

pthread_t uffd_thread;

// Registers the region and starts the handler thread; nullptr, or why not.
const char* uffd_setup() {
  long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0) return "userfaultfd unavailable here (vm.unprivileged_userfaultfd, or no CONFIG_USERFAULTFD)";
  uffd = static_cast<int>(fd);
  uffdio_api api{.api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP, .ioctls = 0};
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<std::uintptr_t>(region);
  reg.range.len = kRegionBytes;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  const char* why = nullptr;
  if (ioctl(uffd, UFFDIO_API, &api) != 0) {
    why = "userfaultfd write-protection unsupported (Linux 5.7+)";
  } else if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
    why = "UFFDIO_REGISTER (write-protect mode) failed";
  } else if ((uffd_stop = eventfd(0, EFD_CLOEXEC)) < 0 ||
             pthread_create(&uffd_thread, nullptr, uffd_handler, nullptr) != 0) {
    why = "no handler thread";
  }
  if (why != nullptr) {
    close(uffd);
    uffd = -1;
  }
  return why;
}

// Unregisters the region and ends the handler thread: a thread outside VM
// mode would make every dunk collect report everything (dunk/dirty.h), so
// the rows after this one must not see it, not even while it exits.
void uffd_teardown() {
  const long before = thread_count();
  (void)!write(uffd_stop, "\1\0\0\0\0\0\0\0", 8);
  pthread_join(uffd_thread, nullptr);
  close(uffd_stop);
  close(uffd);  // unregisters the region
  uffd = uffd_stop = -1;
  for (int i = 0; i < 1000 && thread_count() >= before; ++i) usleep(1000);
}

void uffd_prepare() {
  uffd_protect();
  write_round(0);
  uffd_protect();
  uffd_count = 0;
}

void uffd_round(std::uint64_t round) {
  write_round(round);
  const std::size_t n = std::min<std::size_t>(uffd_count.exchange(0), kWritten + 64);
  for (std::size_t i = 0; i < n; ++i) found.push_back(uffd_pages[i].load());
  uffd_protect();
  check_round();
}

// ---- measuring ---------------------------------------------------------------

// Times `rounds` rounds after an untimed prepare(), in VM mode when `vm`;
// the counts per round are the difference to a run with no round.
Result measure_rounds(const std::string& name, const std::string& mode, std::uint64_t rounds, bool vm,
                      const Probes& probes, void (*prepare)(), void (*round)(std::uint64_t), std::string& failure) {
  auto run = [&](std::uint64_t k, std::uint64_t& ns) {
    fmt::print(stderr, "dunk bench: {} ({}): {} rounds\n", name, mode, k);
    Counters before = probes.read();
    if (vm && !enter()) return Counters{};
    prepare();
    const std::uint64_t t0 = now_ns();
    for (std::uint64_t r = 1; r <= k; ++r) round(r);
    ns = now_ns() - t0;
    if (vm) leave();
    Counters after = probes.read();
    return Counters{after.userspace_exits - before.userspace_exits, after.kvm_exits - before.kvm_exits,
                    after.host_syscalls - before.host_syscalls};
  };
  mismatched_rounds = extra_pages = missing_pages = 0;
  first_extra.reset(), first_missing.reset();
  std::uint64_t ns = 0, empty_ns = 0;
  const Counters full = run(rounds, ns);
  const std::size_t mismatches = mismatched_rounds;
  measured_passes = pass_totals;  // the empty run's prepare clears them
  const Counters empty = run(0, empty_ns);
  auto per_round = [&](std::uint64_t a, std::uint64_t b) {
    return (static_cast<double>(a) - static_cast<double>(b)) / static_cast<double>(rounds);
  };
  Result r;
  r.name = name, r.mode = mode, r.iterations = rounds;
  r.ns_per_op = static_cast<double>(ns) / static_cast<double>(rounds);
  r.userspace_exits_per_op = vm ? per_round(full.userspace_exits, empty.userspace_exits) : 0;
  r.kvm_exits_per_op = !vm ? 0 : probes.kvm_stats.valid() ? per_round(full.kvm_exits, empty.kvm_exits) : -1;
  r.host_syscalls_per_op = probes.syscalls.valid() ? per_round(full.host_syscalls, empty.host_syscalls) : -1;
  if (mismatches == 0) {
    r.note = fmt::format("found exactly the {} pages written, every round", written.size());
  } else {
    r.note = fmt::format("WRONG: {} of {} rounds did not find exactly the pages written ({} pages reported but not "
                         "written, first page {}; {} written but not reported, first page {})",
                         mismatches, rounds, extra_pages, first_extra ? fmt::format("{}", *first_extra) : "-",
                         missing_pages, first_missing ? fmt::format("{}", *first_missing) : "-");
    failure = fmt::format("{} ({}): {}", name, mode, r.note);
  }
  return r;
}

Result unavailable(const std::string& name, const std::string& mode, const std::string& why) {
  Result r;
  r.name = name, r.mode = mode, r.ns_per_op = -1, r.note = why;
  return r;
}

void run_pattern(const char* name, std::vector<std::uint32_t> pages, std::uint64_t rounds, const Probes& probes,
                 Report& report) {
  written = std::move(pages);
  auto add = [&](Result r, const std::string& failure) {
    report.results.push_back(std::move(r));
    if (!failure.empty()) report.failures.push_back(failure);
  };
  std::string failure;
  Result dunk_row = measure_rounds(name, "dunk dirty bits", rounds, true, probes, dunk_prepare, dunk_round, failure);
  if (tracker) {
    dunk_row.note += fmt::format("; per round {} page-table entries read, {} tables skipped (pruned: {}, quiet: {})",
                                 measured_passes.entries_read / rounds, measured_passes.tables_skipped / rounds,
                                 measured_passes.pruned ? "yes" : "no", measured_passes.quiet ? "yes" : "no");
  } else {
    dunk_row = unavailable(name, "dunk dirty bits", "DirtyTracker::create failed");
  }
  add(dunk_row, failure);

  failure.clear();
  if (clear_refs_fd >= 0 && pagemap_fd >= 0) {
    // The kernel may lack CONFIG_MEM_SOFT_DIRTY: then bit 55 never says
    // anything, and the row says so instead of a time.
    soft_prepare();
    write_round(1);
    std::uint64_t probe = 0;
    const off_t at = static_cast<off_t>((reinterpret_cast<std::uintptr_t>(region) / kPage + written[0]) * 8);
    const bool works = pread(pagemap_fd, &probe, sizeof probe, at) == sizeof probe && ((probe >> 55) & 1) != 0;
    if (works) {
      add(measure_rounds(name, "soft-dirty", rounds, false, probes, soft_prepare, soft_round, failure), failure);
    } else {
      add(unavailable(name, "soft-dirty", "this kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY)"), "");
    }
  } else {
    add(unavailable(name, "soft-dirty", "/proc/self/clear_refs or pagemap unavailable"), "");
  }

  failure.clear();
  add(measure_rounds(name, "mprotect+SIGSEGV", rounds, false, probes, mprotect_prepare, mprotect_round, failure),
      failure);
  mprotect_done();

  failure.clear();
  if (const char* why = uffd_setup()) {
    add(unavailable(name, "userfaultfd-wp", why), "");
  } else {
    add(measure_rounds(name, "userfaultfd-wp", rounds, false, probes, uffd_prepare, uffd_round, failure), failure);
    uffd_teardown();
  }
}

// The scan alone, over regions of three sizes holding the same clustered
// pages: what a collect reads, counted.
std::optional<DirtyTracker> scan_tracker;
std::size_t scan_bytes = 0;

void scan_prepare() {
  if (!scan_tracker) {
    auto made = DirtyTracker::create(region, scan_bytes);
    if (!made) return;
    scan_tracker.emplace(std::move(*made));
  }
  scan_tracker->reset();
  write_round(0);
  scan_tracker->reset();
  // Memory the mirror first met in write_round(0) (the 64 GiB mapping is
  // mirrored at its first fault, with large pages) was split to 4 KiB by
  // that clean; the next pass reads every new table once (nothing under them
  // was pruned yet). That one-time walk is not the steady state measured.
  write_round(0);
  scan_tracker->reset();
  pass_totals = {};
}

void scan_round(std::uint64_t round) {
  if (!scan_tracker) return;  // the row reports why
  write_round(round);
  scan_tracker->collect_each([](void* page) { found.push_back(page_index(page)); });
  pass_totals.entries_read += scan_tracker->last_pass().entries_read;
  pass_totals.tables_skipped += scan_tracker->last_pass().tables_skipped;
  check_round();
}

// Up to 1 GiB the scan covers the start of the 1 GiB region; 64 GiB is a
// mapping of its own, reserved (MAP_NORESERVE) and never populated except
// for the pages written: the guest's page tables map all of it all the same,
// and those are what a scan reads.
constexpr std::size_t kScanMib[] = {64, 256, 1024, 64 * 1024};
std::string scan_name(std::size_t mib) {
  return mib < 1024 ? fmt::format("dirty scan {} MiB, same {} pages", mib, kWritten)
                    : fmt::format("dirty scan {} GiB, same {} pages", mib / 1024, kWritten);
}

void scan_one(std::size_t mib, std::uint64_t rounds, const Probes& probes, Report& report) {
  const std::string name = scan_name(mib);
  scan_bytes = mib << 20;
  written = clustered_pages(scan_bytes / kPage);
  scan_tracker.reset();
  std::string failure;
  Result r = measure_rounds(name, "dunk dirty bits", rounds, true, probes, scan_prepare, scan_round, failure);
  if (!scan_tracker) {
    report.results.push_back(unavailable(name, "dunk dirty bits", "DirtyTracker::create failed"));
    return;
  }
  r.note += fmt::format("; per round {} page-table entries read, {} tables skipped",
                        measured_passes.entries_read / rounds, measured_passes.tables_skipped / rounds);
  report.results.push_back(r);
  if (!failure.empty()) report.failures.push_back(failure);
}

void scan_scaling(std::uint64_t rounds, const Options& options, const Probes& probes, Report& report) {
  for (std::size_t mib : kScanMib) {
    const std::size_t bytes = mib << 20;
    // 64 GiB costs a minute or more under emulation (128 MiB of page tables
    // made and walked once): only when asked for by name (--only).
    if (!options.wants(scan_name(mib)) || (bytes > kRegionBytes && options.only.empty())) continue;
    if (bytes <= kRegionBytes) {
      scan_one(mib, rounds, probes, report);
      continue;
    }
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      report.results.push_back(unavailable(scan_name(mib), "dunk dirty bits", fmt::format("cannot map {} MiB", mib)));
      continue;
    }
    madvise(p, bytes, MADV_NOHUGEPAGE);
    char* const small = region;
    region = static_cast<char*>(p);  // what write_round and page_index use
    scan_one(mib, rounds, probes, report);
    scan_tracker.reset();
    region = small;
    munmap(p, bytes);
  }
  scan_tracker.reset();
}

}  // namespace

void run_dirty_scale(std::uint64_t rounds, const Options& options, const Probes& probes, Report& report) {
  // Minutes under emulation (a 1 GiB region filled, 262,144 pages
  // protected per round by the mprotect method): only when asked for by
  // name (--only), not in the default run.
  if (options.only.empty()) return;
  bool any = options.wants(kName) || options.wants(kClusteredName);
  for (std::size_t mib : kScanMib) any = any || options.wants(scan_name(mib));
  if (!any) return;
  void* p = mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    report.results.push_back(unavailable(kName, "dunk dirty bits", "cannot map 1 GiB"));
    return;
  }
  region = static_cast<char*>(p);
  fmt::print(stderr, "dunk bench: {}: filling 1 GiB\n", kName);
  // 4 KiB pages on the host too (userfaultfd and mprotect work per page),
  // every page present (userfaultfd write-protects present pages only on
  // Linux before 6.4's UFFD_FEATURE_WP_UNPOPULATED).
  madvise(region, kRegionBytes, MADV_NOHUGEPAGE);
  madvise(region, kRegionBytes, MADV_POPULATE_WRITE);
  clear_refs_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

  if (options.wants(kName)) run_pattern(kName, spread_pages(), rounds, probes, report);
  if (options.wants(kClusteredName)) run_pattern(kClusteredName, clustered_pages(kRegionPages), rounds, probes, report);
  tracker.reset();
  scan_scaling(rounds, options, probes, report);

  if (clear_refs_fd >= 0) close(clear_refs_fd);
  if (pagemap_fd >= 0) close(pagemap_fd);
  munmap(region, kRegionBytes);
  region = nullptr;
}

}  // namespace dunk::bench
