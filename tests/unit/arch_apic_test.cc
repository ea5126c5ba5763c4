#include "arch/x86_64/apic.h"

#include <gtest/gtest.h>

namespace dunk::arch::apic {
namespace {

// The x2APIC register map (SDM vol. 3A, "Local APIC Register Address Map
// Supported by x2APIC").
TEST(Apic, X2apicMsrNumbers) {
  EXPECT_EQ(msr::kId, 0x802u);
  EXPECT_EQ(msr::kVersion, 0x803u);
  EXPECT_EQ(msr::kTpr, 0x808u);
  EXPECT_EQ(msr::kEoi, 0x80bu);
  EXPECT_EQ(msr::kSvr, 0x80fu);
  EXPECT_EQ(msr::kIsr0, 0x810u);
  EXPECT_EQ(msr::kIrr0, 0x820u);
  EXPECT_EQ(msr::kIcr, 0x830u);
  EXPECT_EQ(msr::kLvtLint0, 0x835u);
  EXPECT_EQ(msr::kLvtLint1, 0x836u);
  EXPECT_EQ(msr::kSelfIpi, 0x83fu);
}

TEST(Apic, InServiceRegisterOfAVector) {
  EXPECT_EQ(isr_msr(32), 0x811u);
  EXPECT_EQ(vector_bit(32), 0u);
  EXPECT_EQ(isr_msr(0x41), 0x812u);
  EXPECT_EQ(vector_bit(0x41), 1u);
  EXPECT_EQ(isr_msr(255), 0x817u);
  EXPECT_EQ(vector_bit(255), 31u);
  EXPECT_EQ(irr_msr(255), 0x827u);
}

TEST(Apic, ApicBaseAndSpuriousVector) {
  EXPECT_EQ(x2apic_base(false), 0xfee00c00u);
  EXPECT_EQ(x2apic_base(true), 0xfee00d00u);
  EXPECT_EQ(make_svr(0xff), 0x1ffu);
  EXPECT_EQ(make_svr(0x1ff), 0x1ffu) << "a vector wider than 8 bits must not spill into the enable bit";
}

// Values worked out by hand from the ICR's figure.
TEST(Apic, IcrEncodingMatchesTheManual) {
  // Fixed, physical, assert, edge, no shorthand, vector 0x40 to x2APIC ID 3.
  EXPECT_EQ(fixed_ipi(0x40, 3), 0x0000'0003'0000'4040u);
  // Shorthand self (01 in 19:18).
  EXPECT_EQ(fixed_ipi_self(0x41), 0x0000'0000'0004'4041u);
  // All excluding self (11 in 19:18).
  EXPECT_EQ(fixed_ipi_others(0xfe), 0x0000'0000'000c'40feu);
  // A 32-bit destination (x2APIC IDs are 32 bits wide).
  EXPECT_EQ(fixed_ipi(0x20, 0x12345678), 0x1234'5678'0000'4020u);
  // INIT, level de-assert, level-triggered, logical: every field moves.
  EXPECT_EQ(encode_icr(Icr{.vector = 0, .delivery = DeliveryMode::kInit, .logical = true, .assert_level = false,
                           .level_triggered = true, .shorthand = Shorthand::kAllIncludingSelf}),
            0x0000'0000'0008'8d00u);
}

TEST(Apic, IcrNeverSetsReservedBits) {
  for (unsigned v = 0; v < 256; ++v) {
    EXPECT_EQ(fixed_ipi(static_cast<std::uint8_t>(v), 0xffffffff) & kIcrReserved, 0u);
    EXPECT_EQ(fixed_ipi_self(static_cast<std::uint8_t>(v)) & kIcrReserved, 0u);
    EXPECT_EQ(fixed_ipi_others(static_cast<std::uint8_t>(v)) & kIcrReserved, 0u);
  }
}

TEST(Apic, IcrRoundTrip) {
  const Icr cases[] = {
      Icr{.vector = 0x40, .destination = 7},
      Icr{.vector = 0xfe, .shorthand = Shorthand::kAllExcludingSelf},
      Icr{.vector = 0x21, .shorthand = Shorthand::kSelf},
      Icr{.vector = 0, .delivery = DeliveryMode::kStartUp, .destination = 0xffffffff},
      Icr{.vector = 0x99, .delivery = DeliveryMode::kNmi, .logical = true, .assert_level = false,
          .level_triggered = true, .shorthand = Shorthand::kAllIncludingSelf, .destination = 0x80000001},
  };
  for (const Icr& icr : cases) EXPECT_EQ(decode_icr(encode_icr(icr)), icr);
  for (std::uint64_t raw : {0x0000'0003'0000'4040ull, 0x0000'0000'000c'40feull, 0xffff'ffff'000c'cfffull & ~kIcrReserved}) {
    EXPECT_EQ(encode_icr(decode_icr(raw)), raw);
  }
}

}  // namespace
}  // namespace dunk::arch::apic
