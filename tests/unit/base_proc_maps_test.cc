#include "base/proc_maps.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace dunk {
namespace {

MapEntry parse(std::string_view line) {
  std::optional<MapEntry> e = parse_maps_line(line);
  EXPECT_TRUE(e.has_value()) << line;
  return e.value_or(MapEntry{});
}

TEST(ParseMapsLine, RegularFile) {
  const MapEntry e = parse("55d0c8a00000-55d0c8a02000 r-xp 00002000 fd:01 1835017                    /usr/bin/cat");
  EXPECT_EQ(e.start, Hva(0x55d0c8a00000));
  EXPECT_EQ(e.end, Hva(0x55d0c8a02000));
  EXPECT_EQ(e.size(), 0x2000u);
  EXPECT_TRUE(e.read);
  EXPECT_FALSE(e.write);
  EXPECT_TRUE(e.exec);
  EXPECT_FALSE(e.shared);
  EXPECT_EQ(e.offset, 0x2000u);
  EXPECT_EQ(e.dev_major, 0xfdu);
  EXPECT_EQ(e.dev_minor, 0x01u);
  EXPECT_EQ(e.inode, 1835017u);
  EXPECT_EQ(e.path, "/usr/bin/cat");
  EXPECT_FALSE(e.deleted);
  EXPECT_TRUE(e.contains(Hva(0x55d0c8a01fff)));
  EXPECT_FALSE(e.contains(Hva(0x55d0c8a02000)));
}

TEST(ParseMapsLine, PathWithSpacesAndDeletedSuffix) {
  MapEntry e = parse("7f0000000000-7f0000001000 rw-s 00000000 00:05 42   /tmp/my dir/a  file (deleted)");
  EXPECT_TRUE(e.shared);
  EXPECT_TRUE(e.write);
  EXPECT_EQ(e.path, "/tmp/my dir/a  file");
  EXPECT_TRUE(e.deleted);
  e = parse("7f0000000000-7f0000001000 rw-s 00000000 00:01 1052 /memfd:dunk-probe (deleted)");
  EXPECT_EQ(e.path, "/memfd:dunk-probe");
  EXPECT_TRUE(e.deleted);
  e = parse("7f0000000000-7f0000001000 r--p 00000000 00:05 42 /tmp/(deleted)x");
  EXPECT_EQ(e.path, "/tmp/(deleted)x");
  EXPECT_FALSE(e.deleted);
}

TEST(ParseMapsLine, PseudoPaths) {
  EXPECT_EQ(parse("7ffc1a5e6000-7ffc1a607000 rw-p 00000000 00:00 0                          [stack]").path, "[stack]");
  EXPECT_EQ(parse("7ffc1a7c9000-7ffc1a7cd000 r--p 00000000 00:00 0                          [vvar]").path, "[vvar]");
  EXPECT_EQ(parse("7ffc1a7cd000-7ffc1a7cf000 r-xp 00000000 00:00 0                          [vdso]").path, "[vdso]");
  EXPECT_EQ(parse("55d0ca5c1000-55d0ca5e2000 rw-p 00000000 00:00 0                          [heap]").path, "[heap]");
  EXPECT_EQ(parse("7f0000000000-7f0000001000 rw-p 00000000 00:00 0    [anon:dunk arena]").path, "[anon:dunk arena]");
  const MapEntry v = parse("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]");
  EXPECT_EQ(v.start, Hva(0xffffffffff600000));
  EXPECT_EQ(v.end, Hva(0xffffffffff601000));
  EXPECT_FALSE(v.read);
  EXPECT_TRUE(v.exec);
  EXPECT_EQ(v.path, "[vsyscall]");
}

TEST(ParseMapsLine, AnonymousWithoutPath) {
  MapEntry e = parse("7f8d4c000000-7f8d4c021000 rw-p 00000000 00:00 0");
  EXPECT_TRUE(e.path.empty());
  EXPECT_EQ(e.inode, 0u);
  // Older kernels pad anonymous lines with spaces.
  e = parse("7f8d4c000000-7f8d4c021000 ---p 00000000 00:00 0                    ");
  EXPECT_TRUE(e.path.empty());
  EXPECT_FALSE(e.read || e.write || e.exec);
}

TEST(ParseMapsLine, WideFields) {
  const MapEntry e = parse("0-ffffffffffffffff rwxs 123456789abcdef0 103:fffff 18446744073709551615 /x");
  EXPECT_EQ(e.start, Hva(0));
  EXPECT_EQ(e.end, Hva(0xffffffffffffffff));
  EXPECT_EQ(e.offset, 0x123456789abcdef0u);
  EXPECT_EQ(e.dev_major, 0x103u);
  EXPECT_EQ(e.dev_minor, 0xfffffu);
  EXPECT_EQ(e.inode, 18446744073709551615u);
}

TEST(ParseMapsLine, RejectsMalformedLines) {
  const char* bad[] = {
      "",
      "garbage",
      "1000-2000",
      "1000-2000 rwxp",
      "1000-2000 rwxp 00000000 00:00",
      "1000 2000 r--p 00000000 00:00 0",
      "1000-2000 rwzp 00000000 00:00 0",       // bad permission
      "1000-2000 r--q 00000000 00:00 0",       // neither shared nor private
      "1000-2000 r--p0 0000000 00:00 0",       // fields run together
      "2000-1000 r--p 00000000 00:00 0",       // start after end
      "11111111111111111-2000 r--p 00000000 00:00 0",  // 17 hex digits
      "1000-2000 r--p 0000000g 00:00 0",
      "1000-2000 r--p 00000000 00-00 0",
      "1000-2000 r--p 00000000 00:00 12a",
      "1000-2000 r--p 00000000 00:00 18446744073709551616",  // inode overflows
      "1000-2000 r--p 00000000 00:00 0/path",
      " 1000-2000 r--p 00000000 00:00 0",
      "-2000 r--p 00000000 00:00 0",
  };
  for (const char* line : bad) EXPECT_FALSE(parse_maps_line(line)) << '"' << line << '"';
}

// --- MapsReader over synthetic files ----------------------------------------

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/dunk_maps_XXXXXX";
    fd_ = mkstemp(name);
    path_ = name;
    EXPECT_GE(fd_, 0);
    EXPECT_EQ(write(fd_, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  }
  ~TempFile() {
    close(fd_);
    unlink(path_.c_str());
  }
  const char* path() const { return path_.c_str(); }

 private:
  int fd_ = -1;
  std::string path_;
};

std::vector<std::string> sample_lines() {
  std::vector<std::string> lines = {
      "55d0c8a00000-55d0c8a02000 r--p 00000000 fd:01 1835017                    /usr/bin/cat",
      "55d0c8a02000-55d0c8a07000 r-xp 00002000 fd:01 1835017                    /usr/bin/cat",
      "55d0ca5c1000-55d0ca5e2000 rw-p 00000000 00:00 0                          [heap]",
      "7f8d4c000000-7f8d4c021000 rw-p 00000000 00:00 0",
      "7f8d50000000-7f8d50001000 rw-s 00000000 00:05 42   /tmp/with space/f (deleted)",
  };
  for (int i = 0; i < 40; ++i) {
    char line[160];
    std::snprintf(line, sizeof line, "7f9%09x-7f9%09x r-xp %08x 08:%02x %d %*s/lib/x86_64-linux-gnu/lib%d.so",
                  i * 0x1000, (i + 1) * 0x1000, i * 0x100, i, 1000 + i, i % 23, "", i);
    lines.push_back(line);
  }
  lines.push_back("7ffc1a5e6000-7ffc1a607000 rw-p 00000000 00:00 0                          [stack]");
  lines.push_back("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]");
  return lines;
}

std::string join(const std::vector<std::string>& lines, bool final_newline = true) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  if (!final_newline && !s.empty()) s.pop_back();
  return s;
}

void expect_same(const MapEntry& got, const MapEntry& want) {
  EXPECT_EQ(got.start, want.start);
  EXPECT_EQ(got.end, want.end);
  EXPECT_EQ(got.read, want.read);
  EXPECT_EQ(got.write, want.write);
  EXPECT_EQ(got.exec, want.exec);
  EXPECT_EQ(got.shared, want.shared);
  EXPECT_EQ(got.offset, want.offset);
  EXPECT_EQ(got.dev_major, want.dev_major);
  EXPECT_EQ(got.dev_minor, want.dev_minor);
  EXPECT_EQ(got.inode, want.inode);
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.deleted, want.deleted);
}

TEST(MapsReader, TinyBuffersCrossEveryBoundary) {
  const std::vector<std::string> lines = sample_lines();
  TempFile file(join(lines));
  for (std::size_t size : {std::size_t{128}, std::size_t{129}, std::size_t{150}, std::size_t{211},
                           std::size_t{4096}}) {
    std::vector<char> buffer(size);
    MapsReader reader(buffer.data(), buffer.size());
    ASSERT_TRUE(reader.open(file.path()));
    MapEntry e;
    std::size_t n = 0;
    while (reader.next(e)) {
      ASSERT_LT(n, lines.size());
      expect_same(e, parse(lines[n]));
      EXPECT_FALSE(e.path_truncated);
      ++n;
    }
    EXPECT_TRUE(reader.status());
    EXPECT_EQ(n, lines.size()) << "buffer " << size;
    EXPECT_EQ(reader.malformed_lines(), 0u);
  }
}

TEST(MapsReader, LastLineWithoutNewline) {
  const std::vector<std::string> lines = sample_lines();
  TempFile file(join(lines, /*final_newline=*/false));
  char buffer[200];
  MapsReader reader(buffer, sizeof buffer);
  ASSERT_TRUE(reader.open(file.path()));
  MapEntry e;
  std::size_t n = 0;
  while (reader.next(e)) ++n;
  EXPECT_EQ(n, lines.size());
  EXPECT_EQ(e.path, "[vsyscall]");
}

TEST(MapsReader, OverLongLineIsReportedTruncated) {
  std::vector<std::string> lines = sample_lines();
  const std::string long_path = "/" + std::string(5000, 'p');
  lines.insert(lines.begin() + 3, "7f0000000000-7f0000002000 r--p 00001000 fd:01 77 " + long_path);
  TempFile file(join(lines));
  char buffer[256];
  MapsReader reader(buffer, sizeof buffer);
  ASSERT_TRUE(reader.open(file.path()));
  MapEntry e;
  std::size_t n = 0;
  while (reader.next(e)) {
    if (n == 3) {
      EXPECT_EQ(e.start, Hva(0x7f0000000000));
      EXPECT_EQ(e.end, Hva(0x7f0000002000));
      EXPECT_EQ(e.inode, 77u);
      EXPECT_TRUE(e.path_truncated);
      EXPECT_FALSE(e.path.empty());
      EXPECT_EQ(long_path.compare(0, e.path.size(), e.path), 0);
    } else {
      ASSERT_LT(n, lines.size());
      expect_same(e, parse(lines[n]));
      EXPECT_FALSE(e.path_truncated);
    }
    ++n;
  }
  EXPECT_EQ(n, lines.size());
}

TEST(MapsReader, MalformedLinesAreSkippedAndCounted) {
  TempFile file(
      "1000-2000 r--p 00000000 00:00 0\n"
      "not a maps line\n"
      "\n"
      "3000-4000 rw-p 00000000 00:00 0 [heap]\n");
  char buffer[128];
  MapsReader reader(buffer, sizeof buffer);
  ASSERT_TRUE(reader.open(file.path()));
  MapEntry e;
  ASSERT_TRUE(reader.next(e));
  EXPECT_EQ(e.start, Hva(0x1000));
  ASSERT_TRUE(reader.next(e));
  EXPECT_EQ(e.path, "[heap]");
  EXPECT_FALSE(reader.next(e));
  EXPECT_EQ(reader.malformed_lines(), 2u);
  EXPECT_TRUE(reader.status());
}

TEST(MapsReader, ReadsFromAGivenFd) {
  TempFile file("1000-2000 r--p 00000000 00:00 0 /a\n");
  const int fd = ::open(file.path(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buffer[128];
  {
    MapsReader reader(buffer, sizeof buffer);
    ASSERT_TRUE(reader.read_from(fd));
    MapEntry e;
    ASSERT_TRUE(reader.next(e));
    EXPECT_EQ(e.path, "/a");
    EXPECT_FALSE(reader.next(e));
  }
  EXPECT_EQ(fcntl(fd, F_GETFD), 0);  // still open: the caller owns it
  close(fd);
}

TEST(MapsReader, Errors) {
  char small[64];
  MapsReader tiny(small, sizeof small);
  EXPECT_FALSE(tiny.open());
  char buffer[256];
  MapsReader missing(buffer, sizeof buffer);
  const Status s = missing.open("/nonexistent/dunk/maps");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, ENOENT);
  MapEntry e;
  EXPECT_FALSE(missing.next(e));
  // A directory opens but cannot be read: the error surfaces in status().
  MapsReader dir(buffer, sizeof buffer);
  ASSERT_TRUE(dir.open("/"));
  EXPECT_FALSE(dir.next(e));
  EXPECT_FALSE(dir.status());
  EXPECT_EQ(dir.status().error().err, EISDIR);
}

// --- the real thing ---------------------------------------------------------

int local_function(int x) { return x * 3 + 1; }

TEST(MapsReader, FindsOwnStackAndCode) {
  volatile int local = 7;
  const Hva stack_address = hva_of(const_cast<int*>(&local));
  const Hva code_address = hva_of(reinterpret_cast<const void*>(&local_function));
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  ASSERT_TRUE(reader.open());
  MapEntry e;
  bool found_stack = false, found_code = false;
  Hva previous_end;
  std::size_t entries = 0;
  while (reader.next(e)) {
    ++entries;
    EXPECT_LE(previous_end, e.start);  // sorted, non-overlapping
    previous_end = e.end;
    if (e.contains(stack_address)) {
      found_stack = true;
      EXPECT_EQ(e.path, "[stack]");
      EXPECT_TRUE(e.read && e.write);
    }
    if (e.contains(code_address)) {
      found_code = true;
      EXPECT_TRUE(e.exec);
      EXPECT_TRUE(e.read);
      EXPECT_FALSE(e.write);
      EXPECT_NE(e.path.find("unit_base_proc_maps_test"), std::string_view::npos) << e.path;
    }
  }
  EXPECT_TRUE(reader.status());
  EXPECT_EQ(reader.malformed_lines(), 0u);
  EXPECT_GT(entries, 5u);
  EXPECT_TRUE(found_stack);
  EXPECT_TRUE(found_code);
  EXPECT_EQ(local_function(local), 22);
}

}  // namespace
}  // namespace dunk
