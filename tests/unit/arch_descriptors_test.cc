#include "arch/x86_64/descriptors.h"

#include <gtest/gtest.h>

#include <array>

namespace dunk::arch {
namespace {

// The raw GDT values of docs/ARCHITECTURE.md ("The guest's machine"),
// verified to run in the nested test VM.
TEST(SegmentDescriptor, BuildersProduceTheVerifiedRawValues) {
  EXPECT_EQ(code64_segment(0).raw(), 0x00af9b000000ffffu);
  EXPECT_EQ(data_segment(0).raw(), 0x00cf93000000ffffu);
  EXPECT_EQ(data_segment(3).raw(), 0x00cff3000000ffffu);
  EXPECT_EQ(code64_segment(3).raw(), 0x00affb000000ffffu);
  // Linux's __USER32_CS.
  EXPECT_EQ(code32_segment(3).raw(), 0x00cffb000000ffffu);
}

TEST(SegmentDescriptor, DecodesEveryField) {
  const SegmentFields f = SegmentDescriptor(0x00affb000000ffffu).decode();
  EXPECT_EQ(f.base, 0u);
  EXPECT_EQ(f.limit, 0xfffffu);
  EXPECT_EQ(f.type, 0xbu);
  EXPECT_TRUE(f.code_or_data);
  EXPECT_EQ(f.dpl, 3u);
  EXPECT_TRUE(f.present);
  EXPECT_FALSE(f.available);
  EXPECT_TRUE(f.long_mode);
  EXPECT_FALSE(f.default_big);
  EXPECT_TRUE(f.granularity);
  EXPECT_EQ(SegmentDescriptor(0x00affb000000ffffu).byte_limit(), 0xffffffffu);
  EXPECT_TRUE(SegmentDescriptor(0x00affb000000ffffu).is_code());
  EXPECT_FALSE(data_segment(3).is_code());
}

TEST(SegmentDescriptor, SplitBaseAndLimitRoundTrip) {
  // Every byte of base and limit distinct, so a piece put in the wrong place
  // or joined wrongly shows.
  const SegmentFields f{.base = 0x89abcdef,
                        .limit = 0x5a5a5,
                        .type = 0x6,
                        .code_or_data = true,
                        .dpl = 2,
                        .present = true,
                        .available = true,
                        .long_mode = false,
                        .default_big = true,
                        .granularity = false};
  const SegmentDescriptor d = SegmentDescriptor::encode(f);
  // Hand-assembled from Figure 3-8.
  EXPECT_EQ(d.raw(), 0x8955d6abcdefa5a5u);
  EXPECT_EQ(d.decode(), f);
}

TEST(SegmentDescriptor, RoundTripOverFieldCombinations) {
  for (std::uint32_t base : {0u, 1u, 0xff000000u, 0x00ffffffu, 0xdeadbeefu}) {
    for (std::uint32_t limit : {0u, 0xffffu, 0xf0000u, 0xfffffu}) {
      for (unsigned dpl = 0; dpl < 4; ++dpl) {
        for (unsigned flags = 0; flags < 64; ++flags) {
          const SegmentFields f{.base = base,
                                .limit = limit,
                                .type = static_cast<std::uint8_t>((flags * 7) & 0xf),
                                .code_or_data = (flags & 1) != 0,
                                .dpl = static_cast<std::uint8_t>(dpl),
                                .present = (flags & 2) != 0,
                                .available = (flags & 4) != 0,
                                .long_mode = (flags & 8) != 0,
                                .default_big = (flags & 16) != 0,
                                .granularity = (flags & 32) != 0};
          ASSERT_EQ(SegmentDescriptor::encode(f).decode(), f);
        }
      }
    }
  }
}

TEST(SegmentDescriptor, EncoderDropsBitsThatDoNotFit) {
  // A limit wider than 20 bits must not spill into the flags nibble.
  const SegmentDescriptor d = SegmentDescriptor::encode({.limit = 0xfffffff});
  EXPECT_EQ(d.limit(), 0xfffffu);
  EXPECT_FALSE(d.available());
  EXPECT_FALSE(d.granularity());
}

TEST(SystemDescriptor, TssDescriptorLayout) {
  const SystemDescriptor d = tss_descriptor(Gva(0xffff'8880'1234'5678), /*busy=*/true);
  // low: limit 0x67, base 23:0 = 0x345678, type 0xb, P, base 31:24 = 0x12.
  EXPECT_EQ(d.low().raw(), 0x12008b3456780067u);
  EXPECT_EQ(d.high(), 0xffff8880u);
  EXPECT_EQ(d.base(), Gva(0xffff'8880'1234'5678));
  EXPECT_EQ(d.type(), SystemType::kTssBusy);
  EXPECT_EQ(d.byte_limit(), 103u);
  EXPECT_EQ(tss_descriptor(Gva(0), false).type(), SystemType::kTssAvailable);
  EXPECT_FALSE(d.low().code_or_data());
}

TEST(SystemDescriptor, RoundTrip) {
  for (std::uint64_t base : {0ull, 0x1000ull, 0x7fff'ffff'f000ull, 0xffff'ffff'ffff'fff8ull, 0x0123'4567'89ab'cdefull}) {
    for (SystemType type : {SystemType::kLdt, SystemType::kTssAvailable, SystemType::kTssBusy}) {
      const SystemSegmentFields f{.base = Gva(base),
                                  .limit = 0x12345,
                                  .type = type,
                                  .dpl = 1,
                                  .present = true,
                                  .available = true,
                                  .granularity = true};
      EXPECT_EQ(SystemDescriptor::encode(f).decode(), f);
    }
  }
}

TEST(IdtGate, LayoutMatchesFigure) {
  const IdtGate g = make_gate(GateType::kInterrupt, Gva(0x1122'3344'5566'7788), Selector(0x10), 3, 0);
  // low: offset 15:0 = 0x7788, selector 0x10, IST 3, type 0xe, P, offset 31:16 = 0x5566.
  EXPECT_EQ(g.low(), 0x55668e0300107788u);
  EXPECT_EQ(g.high(), 0x11223344u);
  const IdtGate t = make_gate(GateType::kTrap, Gva(0), Selector(0x10), 0, 3);
  EXPECT_EQ(t.low(), 0x0000ef0000100000u);
}

TEST(IdtGate, OffsetJoinUsesEveryPiece) {
  // Offsets whose three pieces overlap in value: joining with & (or dropping
  // a piece) gives a different address for at least one of these.
  for (std::uint64_t offset : {0xffff'ffff'ffff'ffffull, 0x0000'0000'0000'ffffull,
                               0x0000'0000'ffff'0000ull, 0xffff'ffff'0000'0000ull,
                               0x0000'7fff'dead'beefull, 0xffff'ffff'8100'0010ull,
                               0x8000'0000'0000'0001ull}) {
    const IdtGate g = make_gate(GateType::kInterrupt, Gva(offset), Selector(0x10), 1, 0);
    EXPECT_EQ(g.offset(), Gva(offset)) << std::hex << offset;
  }
}

TEST(IdtGate, RoundTrip) {
  for (unsigned ist = 0; ist <= kMaxIst; ++ist) {
    for (unsigned dpl = 0; dpl < 4; ++dpl) {
      for (GateType type : {GateType::kInterrupt, GateType::kTrap}) {
        for (bool present : {false, true}) {
          const GateFields f{.offset = Gva(0x0000'5555'aaaa'1234ull + ist * 0x1'0001'0001ull),
                             .selector = Selector::make(2 + dpl, dpl),
                             .ist = static_cast<std::uint8_t>(ist),
                             .type = type,
                             .dpl = static_cast<std::uint8_t>(dpl),
                             .present = present};
          ASSERT_EQ(IdtGate::encode(f).decode(), f);
        }
      }
    }
  }
}

TEST(IdtGate, IstDoesNotSpillIntoType) {
  const IdtGate g = IdtGate::encode({.ist = 0xff, .type = GateType::kInterrupt, .present = true});
  EXPECT_EQ(g.ist(), 7u);
  EXPECT_EQ(g.type(), GateType::kInterrupt);
  EXPECT_EQ(g.low() & 0xf8'0000'0000ull, 0u);  // bits 39:35 stay zero
}

TEST(Tss64, StackAccessors) {
  Tss64 tss;
  tss.rsp[0] = 0x1000;
  tss.set_ist_stack(1, 0x2000);
  tss.set_ist_stack(7, 0x7000);
  tss.iomap_base = kTssNoIoBitmap;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&tss);
  std::uint64_t at4 = 0, at0x24 = 0, at0x54 = 0;
  std::memcpy(&at4, bytes + 4, 8);
  std::memcpy(&at0x24, bytes + 0x24, 8);
  std::memcpy(&at0x54, bytes + 0x54, 8);
  EXPECT_EQ(at4, 0x1000u);
  EXPECT_EQ(at0x24, 0x2000u);
  EXPECT_EQ(at0x54, 0x7000u);
  EXPECT_EQ(tss.ist_stack(1), 0x2000u);
  EXPECT_EQ(bytes[0x66], 104);
}

TEST(PseudoDescriptor, LimitIsSizeMinusOne) {
  const PseudoDescriptor p = make_pseudo_descriptor(Gva(0xffff'c000'0000'1000), gdt::kBytes);
  EXPECT_EQ(p.limit, 127);
  EXPECT_EQ(p.base, 0xffff'c000'0000'1000u);
  EXPECT_EQ(make_pseudo_descriptor(Gva(0), kIdtEntries * sizeof(IdtGate)).limit, 4095);
}

TEST(Gdt, StarForTheLayout) { EXPECT_EQ(gdt::kStar, 0x0023001000000000u); }

TEST(Gdt, CpuNodeLimitEncodesLikeLinux) {
  EXPECT_EQ(encode_cpunode_limit({.cpu = 5, .node = 2}), 0x2005u);
  EXPECT_EQ(decode_cpunode_limit(0x2005), (CpuNode{5, 2}));
  for (unsigned cpu : {0u, 1u, 63u, 4095u}) {
    for (unsigned node : {0u, 1u, 255u}) {
      const SegmentDescriptor d = cpunode_segment({cpu, node});
      // What `lsl` returns for the segment.
      EXPECT_EQ(decode_cpunode_limit(d.byte_limit()), (CpuNode{cpu, node}));
      EXPECT_EQ(d.dpl(), 3u);
      EXPECT_TRUE(d.present());
      EXPECT_FALSE(d.is_code());
    }
  }
}

TEST(Gdt, FillProducesLinuxLayout) {
  std::array<SegmentDescriptor, gdt::kEntries> table;
  table.fill(SegmentDescriptor(0xdeadbeefdeadbeefu));
  const Gva tss(0x7f12'3456'7000);
  ASSERT_TRUE(fill_gdt(table, tss, {.cpu = 3, .node = 1}));
  EXPECT_EQ(table[0].raw(), 0u);
  EXPECT_EQ(table[1].raw(), 0u);
  EXPECT_EQ(table[gdt::kKernelCode.index()].raw(), 0x00af9b000000ffffu);
  EXPECT_EQ(table[gdt::kKernelData.index()].raw(), 0x00cf93000000ffffu);
  EXPECT_EQ(table[gdt::kUser32Code.index()].raw(), 0x00cffb000000ffffu);
  EXPECT_EQ(table[gdt::kUserData.index()].raw(), 0x00cff3000000ffffu);
  EXPECT_EQ(table[gdt::kUserCode.index()].raw(), 0x00affb000000ffffu);
  EXPECT_EQ(table[7].raw(), 0u);
  const SystemDescriptor t(table[gdt::kTss.index()], table[gdt::kTss.index() + 1].raw());
  EXPECT_EQ(t.base(), tss);
  EXPECT_EQ(t.type(), SystemType::kTssBusy);
  EXPECT_EQ(t.byte_limit(), 103u);
  for (unsigned i = 10; i < 15; ++i) EXPECT_EQ(table[i].raw(), 0u) << i;
  EXPECT_EQ(decode_cpunode_limit(table[gdt::kCpuNode.index()].byte_limit()), (CpuNode{3, 1}));
}

TEST(Gdt, FillRejectsCpuOrNodeThatDoNotFit) {
  std::array<SegmentDescriptor, gdt::kEntries> table{};
  table[2] = SegmentDescriptor(42);
  EXPECT_FALSE(fill_gdt(table, Gva(0x1000), {.cpu = 4096, .node = 0}));
  EXPECT_FALSE(fill_gdt(table, Gva(0x1000), {.cpu = 0, .node = 256}));
  EXPECT_EQ(table[2].raw(), 42u);  // untouched
  EXPECT_TRUE(fill_gdt(table, Gva(0x1000), {.cpu = 4095, .node = 255}));
}

}  // namespace
}  // namespace dunk::arch
