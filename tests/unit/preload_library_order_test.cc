#include "preload/library_order.h"

#include <gtest/gtest.h>

#include <string>

namespace dunk::preload {
namespace {

constexpr std::string_view kSelf = "/opt/dunk/libdunk-preload.so";
constexpr std::string_view kLibasan = "/lib/x86_64-linux-gnu/libasan.so.8";
constexpr std::string_view kClangRuntime = "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.asan-x86_64.so";

TEST(PreloadLibraryOrder, SplitsAtColonsAndSpacesSkippingEmptyEntries) {
  EXPECT_EQ(split_first("a:b:c").first, "a");
  EXPECT_EQ(split_first("a:b:c").rest, "b:c");
  EXPECT_EQ(split_first("a b").first, "a");
  EXPECT_EQ(split_first(": :a:b").first, "a");
  EXPECT_EQ(split_first(": :a:b").rest, "b");
  EXPECT_EQ(split_first("only").first, "only");
  EXPECT_EQ(split_first("only").rest, "");
  EXPECT_EQ(split_first("").first, "");
  EXPECT_EQ(split_first("::").first, "");
}

TEST(PreloadLibraryOrder, RecognisesAddressSanitizerRuntimesByFileName) {
  EXPECT_TRUE(must_come_first(kLibasan));
  EXPECT_TRUE(must_come_first("libasan.so"));
  EXPECT_TRUE(must_come_first(kClangRuntime));
  // The other sanitizers do not check their place.
  EXPECT_FALSE(must_come_first("/lib/x86_64-linux-gnu/libtsan.so.2"));
  EXPECT_FALSE(must_come_first("/lib/x86_64-linux-gnu/libubsan.so.1"));
  EXPECT_FALSE(must_come_first("/lib/x86_64-linux-gnu/liblsan.so.0"));
  EXPECT_FALSE(must_come_first("/lib/x86_64-linux-gnu/libc.so.6"));
  // A directory's name does not count.
  EXPECT_FALSE(must_come_first("/opt/libasan.so.8/libfoo.so"));
  EXPECT_FALSE(must_come_first(""));
}

TEST(PreloadLibraryOrder, PlainProgramsKeepDunkFirst) {
  EXPECT_EQ(decide(kSelf, kSelf, "/lib/x86_64-linux-gnu/libc.so.6").step, Step::kNothing);
  EXPECT_EQ(decide(std::string(kSelf) + ":libm.so.6", kSelf, "/lib/x86_64-linux-gnu/libm.so.6").step,
            Step::kNothing);
  EXPECT_EQ(decide(kSelf, kSelf, "").step, Step::kNothing);
}

TEST(PreloadLibraryOrder, ARuntimeLoadedRightAfterDunkGoesFirst) {
  Decision d = decide(kSelf, kSelf, kLibasan);
  EXPECT_EQ(d.step, Step::kExecuteAgain);
  EXPECT_EQ(d.value, kLibasan);
  d = decide(std::string(kSelf) + ":libasan.so.8:libm.so.6", kSelf, kLibasan);
  EXPECT_EQ(d.step, Step::kExecuteAgain);
  EXPECT_EQ(d.value, kLibasan);
  d = decide(kSelf, kSelf, kClangRuntime);
  EXPECT_EQ(d.step, Step::kExecuteAgain);
  EXPECT_EQ(d.value, kClangRuntime);
}

TEST(PreloadLibraryOrder, ARuntimeNativelyNotFirstStaysWhereItIs) {
  // The caller preloads libm before the program's libasan: natively the
  // runtime refuses to run, and so it must under dunk.
  EXPECT_EQ(decide(std::string(kSelf) + ":libm.so.6", kSelf, "/lib/x86_64-linux-gnu/libm.so.6").step,
            Step::kNothing);
}

TEST(PreloadLibraryOrder, ARuntimePathLdPreloadCannotCarryIsLeftAlone) {
  EXPECT_EQ(decide(kSelf, kSelf, "/odd dir/libasan.so.8").step, Step::kNothing);
  EXPECT_EQ(decide(kSelf, kSelf, "/odd:dir/libasan.so.8").step, Step::kNothing);
}

TEST(PreloadLibraryOrder, TheImageExecutedAgainGetsLdPreloadBack) {
  const std::string original = std::string(kSelf) + ":libm.so.6";
  const std::string again = std::string(kLibasan) + ":" + original;
  Decision d = decide(again, kSelf, "/lib/x86_64-linux-gnu/libc.so.6");
  EXPECT_EQ(d.step, Step::kRestore);
  EXPECT_EQ(d.value, original);
  d = decide(std::string(kLibasan) + ":" + std::string(kSelf), kSelf, "");
  EXPECT_EQ(d.step, Step::kRestore);
  EXPECT_EQ(d.value, kSelf);
}

TEST(PreloadLibraryOrder, OtherOrdersAreTheCallersAndLeftAlone) {
  // dunk's library not first and not right after a runtime: not ours to change.
  EXPECT_EQ(decide(std::string("libm.so.6:") + std::string(kSelf), kSelf, "").step, Step::kNothing);
  // A runtime, then something that only starts like dunk's path.
  EXPECT_EQ(decide(std::string(kLibasan) + ":" + std::string(kSelf) + ".old", kSelf, "").step, Step::kNothing);
  // A runtime separated by a space, which dunk never writes.
  EXPECT_EQ(decide(std::string(kLibasan) + " " + std::string(kSelf), kSelf, "").step, Step::kNothing);
  // dunk's library not among the loaded ones.
  EXPECT_EQ(decide(kSelf, "", kLibasan).step, Step::kNothing);
}

}  // namespace
}  // namespace dunk::preload
