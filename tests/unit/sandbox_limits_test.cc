// The sandbox's limits without KVM: nsjail's reading of --rlimit-* values,
// and the region's count of the program's mappings that RLIMIT_AS binds.
#include <gtest/gtest.h>

#include "sandbox/limits.h"
#include "sandbox/region.h"

namespace dunk::sandbox {
namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr rlimit kCurrent{1024, 4096};

TEST(SandboxLimits, NumbersAreUnitsOfTheOption) {
  ParsedLimit p = parse_limit("64", kMiB, kCurrent);
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.value, 64 * kMiB);
  EXPECT_FALSE(p.keyword);
  p = parse_limit("32", 1, kCurrent);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.value, 32u);
  p = parse_limit("0", kMiB, kCurrent);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.value, 0u);
}

TEST(SandboxLimits, NsjailKeywordsWithoutCase) {
  for (const char* word : {"max", "hard", "MAX", "Hard"}) {
    const ParsedLimit p = parse_limit(word, kMiB, kCurrent);
    ASSERT_TRUE(p.ok) << word;
    EXPECT_EQ(p.value, 4096u) << word;  // the current hard limit, not in units
    EXPECT_TRUE(p.keyword);
  }
  for (const char* word : {"def", "soft", "DEF"}) {
    const ParsedLimit p = parse_limit(word, kMiB, kCurrent);
    ASSERT_TRUE(p.ok) << word;
    EXPECT_EQ(p.value, 1024u) << word;
  }
  const ParsedLimit inf = parse_limit("inf", 1, kCurrent);
  ASSERT_TRUE(inf.ok);
  EXPECT_EQ(inf.value, kNoLimit);
}

TEST(SandboxLimits, BadValuesSayWhy) {
  EXPECT_EQ(parse_limit("", 1, kCurrent).error, "an empty value (a number, or max, hard, def, soft or inf)");
  EXPECT_EQ(parse_limit("-1", 1, kCurrent).error, "'-1' is not a number (nor max, hard, def, soft or inf)");
  EXPECT_EQ(parse_limit("1.5", 1, kCurrent).error, "'1.5' is not a number (nor max, hard, def, soft or inf)");
  EXPECT_EQ(parse_limit("0x10", 1, kCurrent).error, "'0x10' is not a number (nor max, hard, def, soft or inf)");
  EXPECT_EQ(parse_limit("infinity", 1, kCurrent).error,
            "'infinity' is not a number (nor max, hard, def, soft or inf)");
  // Past 64 bits, and past them once in MiB.
  EXPECT_EQ(parse_limit("18446744073709551616", 1, kCurrent).error, "'18446744073709551616' is too large");
  EXPECT_EQ(parse_limit("17592186044416", kMiB, kCurrent).error, "'17592186044416' is too large");
  const ParsedLimit last = parse_limit("17592186044415", kMiB, kCurrent);
  ASSERT_TRUE(last.ok);
  EXPECT_EQ(last.value, 17592186044415 * kMiB);
  // RLIM_INFINITY itself is "inf", never a number.
  EXPECT_EQ(parse_limit("18446744073709551615", 1, kCurrent).error, "'18446744073709551615' is too large");
}

TEST(SandboxLimits, OptionsInOrderWithNsjailUnits) {
  const auto& o = limit_options();
  EXPECT_STREQ(o[0].name, "--rlimit-as");
  EXPECT_EQ(o[0].unit, kMiB);
  EXPECT_STREQ(o[1].name, "--rlimit-cpu");
  EXPECT_EQ(o[1].unit, 1u);
  EXPECT_STREQ(o[2].name, "--rlimit-fsize");
  EXPECT_EQ(o[2].unit, kMiB);
  EXPECT_STREQ(o[3].name, "--rlimit-nofile");
  EXPECT_EQ(o[3].unit, 1u);
  EXPECT_STREQ(o[4].name, "--rlimit-nproc");
  EXPECT_EQ(o[4].unit, 1u);
  EXPECT_STREQ(o[5].name, "--rlimit-stack");
  EXPECT_EQ(o[5].unit, kMiB);
}

// The count RLIMIT_AS binds: each byte once, however mappings overlap,
// merge and split.
TEST(SandboxLimits, RegionCountsMappedBytes) {
  Region r;
  r.note_mapped(0x10000, 0x20000);
  r.note_mapped(0x30000, 0x40000);
  EXPECT_EQ(r.mapped_bytes(), 0x20000u);
  r.note_mapped(0x18000, 0x38000);  // bridges the two
  EXPECT_EQ(r.mapped_bytes(), 0x30000u);
  r.note_unmapped(0x20000, 0x28000);  // a hole in the middle
  EXPECT_EQ(r.mapped_bytes(), 0x28000u);
  r.note_unmapped(0x0, 0x100000);
  EXPECT_EQ(r.mapped_bytes(), 0u);
}

TEST(SandboxLimits, RegionFitsCountsOnlyNewBytes) {
  Region r;
  r.set_address_space_limit(0x30000);
  r.note_mapped(0x10000, 0x30000);  // 0x20000 of 0x30000
  EXPECT_TRUE(r.fits(0x30000, 0x40000));
  EXPECT_FALSE(r.fits(0x30000, 0x40001));
  // Over what is mapped already, only the new part counts (MAP_FIXED).
  EXPECT_TRUE(r.fits(0x10000, 0x40000));
  EXPECT_FALSE(r.fits(0x0, 0x40000));
  EXPECT_TRUE(r.may_grow(0x10000));
  EXPECT_FALSE(r.may_grow(0x10001));
  EXPECT_FALSE(r.may_grow(~std::uint64_t{0}));
  // A limit below what is mapped: nothing fits any more, not even a mapping
  // that adds nothing (the kernel's may_expand_vm compares the total too).
  r.set_address_space_limit(0x8000);
  EXPECT_FALSE(r.fits(0x30000, 0x31000));
  EXPECT_FALSE(r.fits(0x10000, 0x20000));
  r.note_unmapped(0x10000, 0x2c000);
  EXPECT_TRUE(r.fits(0x10000, 0x14000));
}

}  // namespace
}  // namespace dunk::sandbox
