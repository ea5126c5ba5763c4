// dunk-gcbench: a workload for the Boehm collector (Debian's libgc, bdwgc
// 8.2) that checks its own results, for comparing the collector's ways of
// finding written pages (docs/GC.md): non-incremental, incremental with
// mprotect, with the kernel's soft-dirty bits, and under `dunk exec` with
// dunk's dirty bits behind the same soft-dirty interface.
//
// In the style of Ellis and Kovac's GCBench (as Boehm ported it to C): a
// long-lived tree and array built first; then trees of many depths built
// top-down and bottom-up and dropped. Added: pointer updates into old
// objects (each tree's root kept a while in a table allocated at the start:
// stores into old pages, which an incremental collector must find dirty or
// free live objects), and buffers in the collected heap filled with read()
// from a file (the kernel writes them) and kept on a list in old objects.
// Every structure is verified at the end; the results hash to one value
// that must be the same in every variant.
//
// Output: one line of JSON on stdout: the variant's settings as the
// collector reports them, total time, collections, world-stopped pauses
// (measured around the collector's stop-the-world events), the hash.
// Exit status 0 when every check passed.
//
//   dunk-gcbench [--depth N] [--file-mib M] [--label TEXT]
#include <fcntl.h>
#include <gc/gc.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// FNV-1a over everything the program checks.
struct Hash {
  std::uint64_t h = 14695981039346656037u;
  void add(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211u;
    }
  }
};

int failures = 0;
void check(bool ok, const char* what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "dunk-gcbench: check failed: %s\n", what);
  }
}

// ---- trees (GCBench) ----------------------------------------------------------

struct Node {
  Node* left;
  Node* right;
  std::uint64_t value;
};

Node* new_node(Node* l, Node* r) {
  auto* n = static_cast<Node*>(GC_MALLOC(sizeof(Node)));
  n->left = l;
  n->right = r;
  n->value = 0;
  return n;
}

int tree_size(int depth) { return (1 << (depth + 1)) - 1; }

// Top-down: allocate the node, then its children.
void populate(int depth, Node* node) {
  if (depth <= 0) return;
  node->left = new_node(nullptr, nullptr);
  node->right = new_node(nullptr, nullptr);
  populate(depth - 1, node->left);
  populate(depth - 1, node->right);
}

// Bottom-up: children first.
Node* make_tree(int depth) {
  if (depth <= 0) return new_node(nullptr, nullptr);
  Node* l = make_tree(depth - 1);
  Node* r = make_tree(depth - 1);
  return new_node(l, r);
}

int count_nodes(const Node* n) { return n == nullptr ? 0 : 1 + count_nodes(n->left) + count_nodes(n->right); }

// ---- old objects pointing at new ones -------------------------------------------

// Allocated at the start, so they are old by the time the stores come; each
// slot points at a record made later.
struct Record {
  std::uint64_t key;
  std::uint64_t check;  // key * a constant: a freed and reused record breaks it
  Node* tree;           // a young tree kept alive only through this record
  int depth;
};
constexpr std::uint64_t kMul = 0x9e3779b97f4a7c15u;
constexpr int kSlots = 4096;
Record** slots = nullptr;

std::uint64_t rng_state = 88172645463325252u;
std::uint64_t next_random() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

// ---- buffers the kernel fills ----------------------------------------------------

struct Buffer {
  Buffer* next;
  std::uint64_t bytes;
  std::uint64_t offset;  // in the file
  unsigned char data[1];  // `bytes` bytes, from the file
};

// ---- pauses -------------------------------------------------------------------------

std::uint64_t pause_started = 0, pause_total = 0, pause_max = 0, pauses = 0;

void on_event(GC_EventType event) {
  if (event == GC_EVENT_PRE_STOP_WORLD) {
    pause_started = now_ns();
  } else if (event == GC_EVENT_POST_START_WORLD && pause_started != 0) {
    const std::uint64_t d = now_ns() - pause_started;
    pause_total += d;
    if (d > pause_max) pause_max = d;
    ++pauses;
    pause_started = 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int max_depth = 16;
  int file_mib = 8;
  std::string label = "run";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--depth") == 0) max_depth = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--file-mib") == 0) file_mib = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--label") == 0) label = argv[i + 1];
  }
  const int stretch_depth = max_depth + 2;
  const int long_lived_depth = max_depth;
  const int min_depth = 4;
  const std::size_t array_size = 500000;

  // The data the kernel will write into the heap: a file of known contents.
  char path[] = "/tmp/dunk-gcbench-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return 2;
  unlink(path);
  const std::size_t file_bytes = static_cast<std::size_t>(file_mib) << 20;
  auto file_byte = [](std::uint64_t at) { return static_cast<unsigned char>(at * 131 >> 3); };
  {
    unsigned char block[65536];
    for (std::size_t done = 0; done < file_bytes; done += sizeof block) {
      for (std::size_t i = 0; i < sizeof block; ++i) block[i] = file_byte(done + i);
      if (write(fd, block, sizeof block) != static_cast<ssize_t>(sizeof block)) return 2;
    }
  }

  GC_INIT();
  GC_set_on_collection_event(on_event);
  const std::uint64_t start = now_ns();
  Hash hash;

  // Long-lived data, built first.
  slots = static_cast<Record**>(GC_MALLOC(kSlots * sizeof(Record*)));
  Node* long_lived = new_node(nullptr, nullptr);
  populate(long_lived_depth, long_lived);
  auto* array = static_cast<double*>(GC_MALLOC_ATOMIC(array_size * sizeof(double)));
  for (std::size_t i = 0; i < array_size / 2; ++i) array[i] = 1.0 / static_cast<double>(i + 1);
  Buffer* kept = nullptr;  // list of kernel-filled buffers, reachable from a root

  // A stretch tree: the heap grows to its size, then it goes.
  check(count_nodes(make_tree(stretch_depth)) == tree_size(stretch_depth), "stretch tree size");

  std::uint64_t record_key = 0;
  std::uint64_t file_at = 0;
  for (int depth = min_depth; depth <= max_depth; depth += 2) {
    const int iterations = 2 * tree_size(stretch_depth) / tree_size(depth);
    for (int i = 0; i < iterations; ++i) {
      Node* top_down = new_node(nullptr, nullptr);
      populate(depth, top_down);
      check(count_nodes(top_down) == tree_size(depth), "top-down tree size");
      Node* bottom_up = make_tree(depth);
      check(count_nodes(bottom_up) == tree_size(depth), "bottom-up tree size");
      // A store into an old object: the old table now holds this young tree.
      if (i % 4 == 0) {
        auto* r = static_cast<Record*>(GC_MALLOC(sizeof(Record)));
        r->key = ++record_key;
        r->check = r->key * kMul;
        r->tree = bottom_up;
        r->depth = depth;
        slots[next_random() % kSlots] = r;
      }
      // The kernel fills a new buffer in the collected heap (scanned: it
      // may hold pointers as far as the collector knows), kept from an old
      // list head.
      if (i % 8 == 0) {
        const std::uint64_t bytes = 4096 + (next_random() % 8) * 4096;
        auto* b = static_cast<Buffer*>(GC_MALLOC(sizeof(Buffer) + bytes));
        b->bytes = bytes;
        if (file_at + bytes > file_bytes) file_at = 0;
        b->offset = file_at;
        if (pread(fd, b->data, bytes, static_cast<off_t>(file_at)) != static_cast<ssize_t>(bytes)) {
          check(false, "read into the heap");
        }
        file_at += bytes;
        // Keep one in four; the rest become garbage.
        if (next_random() % 4 == 0) {
          b->next = kept;
          kept = b;
        }
      }
    }
  }

  // Verify everything the collector had to keep.
  check(count_nodes(long_lived) == tree_size(long_lived_depth), "long-lived tree");
  hash.add(static_cast<std::uint64_t>(count_nodes(long_lived)));
  for (std::size_t i = 0; i < array_size / 2; i += 997) {
    check(array[i] == 1.0 / static_cast<double>(i + 1), "long-lived array");
  }
  std::uint64_t live_records = 0;
  for (int s = 0; s < kSlots; ++s) {
    const Record* r = slots[s];
    if (r == nullptr) continue;
    ++live_records;
    check(r->check == r->key * kMul, "record in an old slot");
    check(count_nodes(r->tree) == tree_size(r->depth), "young tree kept by an old slot");
    hash.add(r->key);
  }
  std::uint64_t buffers = 0;
  for (const Buffer* b = kept; b != nullptr; b = b->next) {
    ++buffers;
    hash.add(b->bytes);
    // Its bytes are the file's, where it was read from.
    std::uint64_t wrong = 0, sum = 0;
    for (std::uint64_t i = 0; i < b->bytes; ++i) {
      wrong += b->data[i] != file_byte(b->offset + i);
      sum = sum * 31 + b->data[i];
    }
    check(wrong == 0, "buffer the kernel filled");
    hash.add(sum);
  }
  const std::uint64_t total = now_ns() - start;
  close(fd);

  const int protects = GC_incremental_protection_needs();
  const char* vdb = !GC_is_incremental_mode() ? "none" : protects == GC_PROTECTS_NONE ? "soft-dirty" : "mprotect";
  std::printf(
      "{\"label\": \"%s\", \"incremental\": %s, \"dirty_pages_by\": \"%s\", \"total_ms\": %.1f, \"collections\": %lu, "
      "\"pauses\": %" PRIu64 ", \"pause_total_ms\": %.2f, \"pause_max_ms\": %.2f, \"pause_avg_ms\": %.3f, "
      "\"full_gc_total_ms\": %lu, \"heap_mib\": %.1f, \"records\": %" PRIu64 ", \"buffers\": %" PRIu64
      ", \"result\": \"%016" PRIx64 "\", \"checks_failed\": %d}\n",
      label.c_str(), GC_is_incremental_mode() ? "true" : "false", vdb, static_cast<double>(total) / 1e6,
      static_cast<unsigned long>(GC_get_gc_no()), pauses, static_cast<double>(pause_total) / 1e6,
      static_cast<double>(pause_max) / 1e6, pauses != 0 ? static_cast<double>(pause_total) / 1e6 / static_cast<double>(pauses) : 0.0,
      GC_get_full_gc_total_time(), static_cast<double>(GC_get_heap_size()) / (1 << 20), live_records, buffers,
      hash.h, failures);
  return failures == 0 ? 0 : 1;
}
