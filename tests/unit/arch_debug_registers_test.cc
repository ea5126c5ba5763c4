#include "arch/x86_64/debug_registers.h"

#include <gtest/gtest.h>

namespace dunk::arch::dr7 {
namespace {

// Values a debugger's DR7 takes for the manual's fields (SDM vol. 3B Figure
// 17-2 "Debug Control Register (DR7)").
TEST(DebugRegisters, ArmEncodesTheManualsFields) {
  // Slot 0, instruction breakpoint: L0 only (LEN and R/W 00), bit 10 set.
  EXPECT_EQ(arm(0, 0, Condition::kExecute, 1), 0x401u);
  // Slot 1, 4-byte write watch: L1 = bit 2, R/W1 = 01 at 20, LEN1 = 11 at 22.
  EXPECT_EQ(arm(0, 1, Condition::kWrite, 4), 0x400u | (1u << 2) | (1u << 20) | (3u << 22));
  // Slot 3, 8-byte access watch: L3 = bit 6, R/W3 = 11 at 28, LEN3 = 10 at 30.
  EXPECT_EQ(arm(0, 3, Condition::kReadWrite, 8), 0x400u | (1u << 6) | (3u << 28) | (2u << 30));
}

TEST(DebugRegisters, DecodersInvertTheEncoder) {
  std::uint64_t dr7 = 0;
  dr7 = arm(dr7, 0, Condition::kExecute, 1);
  dr7 = arm(dr7, 2, Condition::kWrite, 2);
  dr7 = arm(dr7, 3, Condition::kReadWrite, 8);
  EXPECT_EQ(armed_slots(dr7), 0b1101u);
  EXPECT_EQ(condition(dr7, 0), Condition::kExecute);
  EXPECT_EQ(length(dr7, 0), 1u);
  EXPECT_EQ(condition(dr7, 2), Condition::kWrite);
  EXPECT_EQ(length(dr7, 2), 2u);
  EXPECT_EQ(condition(dr7, 3), Condition::kReadWrite);
  EXPECT_EQ(length(dr7, 3), 8u);
  for (unsigned bytes : {1u, 2u, 4u, 8u}) EXPECT_EQ(length(arm(0, 1, Condition::kWrite, bytes), 1), bytes);
}

TEST(DebugRegisters, DisarmClearsOnlyItsSlot) {
  const std::uint64_t both = arm(arm(0, 0, Condition::kWrite, 4), 1, Condition::kReadWrite, 2);
  const std::uint64_t one = disarm(both, 0);
  EXPECT_EQ(armed_slots(one), 0b10u);
  EXPECT_EQ(one, arm(0, 1, Condition::kReadWrite, 2));
}

TEST(DebugRegisters, LengthCodes) {
  EXPECT_EQ(length_code(1), 0u);
  EXPECT_EQ(length_code(2), 1u);
  EXPECT_EQ(length_code(4), 3u);
  EXPECT_EQ(length_code(8), 2u);
  EXPECT_FALSE(length_code(3));
  EXPECT_FALSE(length_code(16));
}

TEST(DebugRegisters, AlignedRangeIsOnePiece) {
  WatchPiece p[4];
  ASSERT_EQ(split_watch_range(0x1000, 4, p, 4), 1u);
  EXPECT_EQ(p[0], (WatchPiece{0x1000, 4}));
  ASSERT_EQ(split_watch_range(0x1008, 8, p, 4), 1u);
  EXPECT_EQ(p[0], (WatchPiece{0x1008, 8}));
}

TEST(DebugRegisters, UnalignedRangeSplitsIntoAlignedPieces) {
  WatchPiece p[4];
  // 0x1003..0x100b: 1 byte at 3, 4 at 4, 2 at 8, 1 at a.
  ASSERT_EQ(split_watch_range(0x1003, 8, p, 4), 4u);
  EXPECT_EQ(p[0], (WatchPiece{0x1003, 1}));
  EXPECT_EQ(p[1], (WatchPiece{0x1004, 4}));
  EXPECT_EQ(p[2], (WatchPiece{0x1008, 2}));
  EXPECT_EQ(p[3], (WatchPiece{0x100a, 1}));
}

TEST(DebugRegisters, RangesNeedingTooManyPiecesAreRefused) {
  WatchPiece p[4];
  EXPECT_EQ(split_watch_range(0x1000, 40, p, 4), 5u);  // five 8-byte pieces
  EXPECT_EQ(split_watch_range(0x1001, 8, p, 2), 3u);
  EXPECT_EQ(split_watch_range(0x1000, 0, p, 4), 5u);
}

}  // namespace
}  // namespace dunk::arch::dr7
