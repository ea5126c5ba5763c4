#include <gtest/gtest.h>

#include "dunk/address.h"
#include "dunk/result.h"

namespace dunk {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) return Error{"half(odd)", EINVAL};
  return x / 2;
}

Result<int> quarter(int x) {
  DUNK_ASSIGN_OR_RETURN(int h, half(x));
  return half(h);
}

TEST(Result, CarriesValueOrError) {
  auto ok = quarter(8);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 2);

  auto bad = quarter(6);
  ASSERT_FALSE(bad);
  EXPECT_STREQ(bad.error().what, "half(odd)");
  EXPECT_EQ(bad.error().err, EINVAL);
  char buf[128];
  EXPECT_STREQ(bad.error().format(buf, sizeof buf), "half(odd): Invalid argument");
}

TEST(Address, AlignmentAndDistance) {
  Hva a(0x1234);
  EXPECT_EQ(a.align_down(0x1000).value(), 0x1000u);
  EXPECT_EQ(a.align_up(0x1000).value(), 0x2000u);
  EXPECT_FALSE(a.is_aligned(0x1000));
  EXPECT_EQ(Hva(0x3000) - Hva(0x1000), 0x2000u);
  EXPECT_EQ(identity_gva(Hva(0x5000)), Gva(0x5000));
  static_assert(!std::is_convertible_v<Hva, Gpa>, "address kinds must not mix");
}

}  // namespace
}  // namespace dunk
