// SparseBitmap against a plain std::vector<bool> under random operations,
// and the property it exists for: after a clear, walking it visits only
// what was set since.
#include "base/sparse_bitmap.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace dunk {
namespace {

std::vector<std::uint64_t> bits_of(const SparseBitmap& b) {
  std::vector<std::uint64_t> out;
  b.for_each([&](std::uint64_t bit) { out.push_back(bit); });
  return out;
}

std::vector<std::uint64_t> bits_of(const std::vector<bool>& v) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 0; i < v.size(); ++i) {
    if (v[i]) out.push_back(i);
  }
  return out;
}

TEST(SparseBitmap, RangesAtEveryAlignmentMatchAPlainBitmap) {
  SparseBitmap b;
  ASSERT_TRUE(b.allocate(1000));  // not a multiple of 64
  std::vector<bool> ref(1000);
  const std::pair<std::uint64_t, std::uint64_t> ranges[] = {{0, 1}, {3, 5}, {60, 70}, {128, 256}, {255, 257},
                                                            {900, 2000}, {500, 500}};
  for (auto [lo, hi] : ranges) {
    b.set(lo, hi);
    for (std::uint64_t i = lo; i < hi && i < ref.size(); ++i) ref[i] = true;
  }
  EXPECT_EQ(bits_of(b), bits_of(ref));
  EXPECT_EQ(b.count(), bits_of(ref).size());
  EXPECT_TRUE(b.test(999));
  EXPECT_FALSE(b.test(1000)) << "past the end";
  EXPECT_FALSE(b.test(2));
  b.clear();
  EXPECT_TRUE(bits_of(b).empty());
  EXPECT_EQ(b.count(), 0u);
  b.release();
}

TEST(SparseBitmap, RandomSetsClearsAndMergesMatchAPlainBitmap) {
  std::mt19937_64 rng(42);
  constexpr std::uint64_t kBits = 64 * 64 * 3 + 17;  // three summary words and a bit
  SparseBitmap a, b;
  ASSERT_TRUE(a.allocate(kBits));
  ASSERT_TRUE(b.allocate(kBits));
  std::vector<bool> ra(kBits), rb(kBits);
  for (int round = 0; round < 200; ++round) {
    for (int k = 0; k < 5; ++k) {
      const std::uint64_t lo = rng() % kBits;
      const std::uint64_t hi = lo + rng() % (round % 10 == 0 ? 700 : 9);
      const bool into_a = (rng() & 1) != 0;
      (into_a ? a : b).set(lo, hi);
      for (std::uint64_t i = lo; i < hi && i < kBits; ++i) (into_a ? ra : rb)[i] = true;
    }
    if (round % 7 == 3) {
      a.merge(b);
      for (std::uint64_t i = 0; i < kBits; ++i) ra[i] = ra[i] || rb[i];
    }
    if (round % 11 == 5) {
      b.clear();
      rb.assign(kBits, false);
    }
    ASSERT_EQ(bits_of(a), bits_of(ra)) << "round " << round;
    ASSERT_EQ(bits_of(b), bits_of(rb)) << "round " << round;
    ASSERT_EQ(a.count(), bits_of(ra).size());
  }
  a.release();
  b.release();
}

TEST(SparseBitmap, AMergeOfAnEmptyBitmapAddsNothing) {
  SparseBitmap a, b;
  ASSERT_TRUE(a.allocate(4096));
  ASSERT_TRUE(b.allocate(4096));
  b.set(100, 101);
  b.clear();  // its summary is clear again: nothing to merge
  a.set(7, 8);
  a.merge(b);
  EXPECT_EQ(bits_of(a), (std::vector<std::uint64_t>{7}));
  a.release();
  b.release();
}

}  // namespace
}  // namespace dunk
