// The GDB remote protocol's commands (debug/gdb_session.h) over a fake
// target: what each packet makes the target do, and the reply's exact bytes.
#include "debug/gdb_session.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "debug/gdb_packets.h"

namespace dunk::debug {
namespace {

constexpr ThreadId kMain = 0x10, kWorker = 0x11;
constexpr std::uint64_t kMemoryBase = 0x1000;

struct InsertedBreakpoint {
  BreakpointType type;
  std::uint64_t address, length;
  bool operator==(const InsertedBreakpoint&) const = default;
};

class FakeTarget final : public Target {
 public:
  FakeTarget() {
    for (ThreadId t : {kMain, kWorker}) {
      X86State& s = state[t];
      for (unsigned i = 0; i < 16; ++i) s.gpr[i] = static_cast<std::uint64_t>(t) << 8 | i;
      s.rip = 0x0123456789abcdef;
      s.rflags = 0x246;
      s.segment[0] = 0x33, s.segment[1] = 0x2b;
      s.fs_base = 0x7f0000001000;
      s.xsave = xsave[t].data();
      xsave[t].assign(1024, std::byte{0});
      s.xsave = xsave[t].data();
      // XSTATE_BV: x87 and SSE held; xmm0's first byte 0x5a.
      const std::uint64_t bv = 3;
      std::memcpy(s.xsave + kXsaveHeaderOffset, &bv, sizeof bv);
      s.xsave[kXsaveXmmOffset] = std::byte{0x5a};
    }
    for (unsigned i = 0; i < memory.size(); ++i) memory[i] = static_cast<std::uint8_t>(i);
  }

  std::size_t threads(ThreadId* out, std::size_t max) noexcept override {
    const ThreadId all[] = {kMain, kWorker};
    for (std::size_t i = 0; i < 2 && i < max; ++i) out[i] = all[i];
    return 2;
  }
  bool thread_alive(ThreadId thread) noexcept override { return thread == kMain || thread == kWorker; }
  std::size_t describe_thread(ThreadId thread, char* out, std::size_t size) noexcept override {
    const std::string text = thread == kMain ? "vCPU 0" : "vCPU 1";
    std::memcpy(out, text.data(), std::min(size, text.size()));
    return std::min(size, text.size());
  }
  bool has_avx() noexcept override { return avx; }
  Status read_registers(ThreadId thread, X86State& out) noexcept override {
    reads.push_back(thread);
    out = state[thread];
    return {};
  }
  Status write_registers(ThreadId thread, const X86State& in) noexcept override {
    writes.push_back(thread);
    state[thread] = in;
    return {};
  }
  std::size_t read_memory(std::uint64_t address, void* out, std::size_t size) noexcept override {
    if (address < kMemoryBase || address >= kMemoryBase + memory.size()) return 0;
    const std::size_t n = std::min<std::size_t>(size, kMemoryBase + memory.size() - address);
    std::memcpy(out, memory.data() + (address - kMemoryBase), n);
    return n;
  }
  bool write_memory(std::uint64_t address, const void* data, std::size_t size) noexcept override {
    if (address < kMemoryBase || address + size > kMemoryBase + memory.size()) return false;
    std::memcpy(memory.data() + (address - kMemoryBase), data, size);
    return true;
  }
  Status insert_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept override {
    if (type == BreakpointType::kAccess) return Error{"not here", ENOTSUP};
    if (address == 0xdead) return Error{"no room", ENOSPC};
    inserted.push_back({type, address, length});
    return {};
  }
  Status remove_breakpoint(BreakpointType type, std::uint64_t address, std::uint64_t length) noexcept override {
    removed.push_back({type, address, length});
    return {};
  }
  void pass_signals(std::uint64_t mask) noexcept override { passed = mask; }
  StopEvent halt() noexcept override {
    ++halts;
    return halted;
  }
  bool resume(const ResumeRequest& request, StopEvent& out) noexcept override {
    resumed.push_back(request);
    if (pending) {
      out = *pending;
      return false;
    }
    return true;
  }
  long read_auxv(std::uint64_t offset, void* out, std::size_t size) noexcept override {
    if (offset >= auxv.size()) return 0;
    const std::size_t n = std::min<std::size_t>(size, auxv.size() - offset);
    std::memcpy(out, auxv.data() + offset, n);
    return static_cast<long>(n);
  }
  long exec_file(char* out, std::size_t size) noexcept override {
    const std::string path = "/usr/bin/program";
    std::memcpy(out, path.data(), std::min(size, path.size()));
    return static_cast<long>(path.size());
  }
  void kill() noexcept override { killed = true; }
  void detach() noexcept override { detached = true; }

  bool avx = false;
  std::map<ThreadId, X86State> state;
  std::map<ThreadId, std::vector<std::byte>> xsave;
  std::vector<std::uint8_t> memory = std::vector<std::uint8_t>(0x100);
  std::vector<ThreadId> reads, writes;
  std::vector<InsertedBreakpoint> inserted, removed;
  std::uint64_t passed = 0;
  StopEvent halted{StopReason::kSignal, kMain, SIGTRAP, 0};
  int halts = 0;
  std::vector<ResumeRequest> resumed;
  std::optional<StopEvent> pending;
  std::string auxv = std::string("\x21\0\0\0\0\0\0\0\x00\x10\0\0\0\0\0\0", 16);
  bool killed = false, detached = false;
};

class GdbSession : public ::testing::Test {
 protected:
  // The reply to `packet`, expecting `next`.
  std::string ask(std::string_view packet, Session::Next next = Session::Next::kReply) {
    EXPECT_EQ(static_cast<int>(session.handle(packet)), static_cast<int>(next)) << packet;
    return std::string(session.reply());
  }
  std::string stop(const StopEvent& event) {
    session.stop_reply(event);
    return std::string(session.reply());
  }

  FakeTarget target;
  Session session{target};
};

std::string hex64(std::uint64_t v) {
  char out[16];
  encode_hex(&v, sizeof v, out);
  return std::string(out, 16);
}

TEST_F(GdbSession, SupportedFeaturesAndUnknownPackets) {
  const std::string supported = ask("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386");
  EXPECT_NE(supported.find("PacketSize=4000"), std::string::npos) << supported;
  EXPECT_NE(supported.find("qXfer:features:read+"), std::string::npos) << supported;
  EXPECT_NE(supported.find("swbreak+"), std::string::npos) << supported;
  EXPECT_EQ(ask("vMustReplyEmpty"), "");
  EXPECT_EQ(ask("qTStatus"), "");
  EXPECT_EQ(ask("!"), "");
  EXPECT_EQ(ask("qAttached"), "1");
  EXPECT_EQ(ask("vCont?"), "vCont;c;C;s;S;t");
  EXPECT_FALSE(session.no_ack());
  EXPECT_EQ(ask("QStartNoAckMode"), "OK");
  EXPECT_TRUE(session.no_ack());
}

TEST_F(GdbSession, HaltReportsWhereTheProgramStands) {
  EXPECT_EQ(ask("?"), "T05thread:10;");
  EXPECT_EQ(target.halts, 1);
  target.halted = StopEvent{StopReason::kSignal, kWorker, SIGUSR1, 0};
  EXPECT_EQ(ask("?"), "T1ethread:11;") << "SIGUSR1 is GDB's 30";
  EXPECT_EQ(ask("qC"), "QC11") << "the stopped thread is the current one";
}

TEST_F(GdbSession, RegistersAllAndOne) {
  const std::string all = ask("g");
  ASSERT_EQ(all.size(), 2 * RegisterLayout(false).total_size());
  EXPECT_EQ(all.size(), 2u * 560) << "GDB's amd64 Linux description without AVX";
  EXPECT_EQ(all.substr(0, 16), hex64(0x1000)) << "rax of the first thread";
  EXPECT_EQ(all.substr(16 * 16, 16), "efcdab8967452301") << "rip, little-endian";
  EXPECT_EQ(all.substr(17 * 16, 8), "46020000") << "eflags, 4 bytes";
  EXPECT_EQ(all.substr(17 * 16 + 8, 16), "330000002b000000") << "cs, ss";
  EXPECT_EQ(ask("p10"), "efcdab8967452301");
  EXPECT_EQ(ask("p3a"), hex64(0x7f0000001000)) << "fs_base";
  EXPECT_EQ(ask("p28"), "5a000000000000000000000000000000") << "xmm0";
  EXPECT_EQ(ask("p20"), "00000000") << "fctrl as the image holds it";
  EXPECT_EQ(ask("p22"), "ffff0000") << "ftag: every register empty";
  // x87 in its initial state (XSTATE_BV without it): FCW 0x37f.
  const std::uint64_t sse_only = 2;
  std::memcpy(target.state[kMain].xsave + kXsaveHeaderOffset, &sse_only, sizeof sse_only);
  EXPECT_EQ(ask("p20"), "7f030000");
  EXPECT_EQ(ask("p3c"), "E01") << "no ymm0h without AVX";
  target.avx = true;
  EXPECT_EQ(ask("g").size(), 2u * (560 + 256));
  EXPECT_EQ(ask("p3c"), "00000000000000000000000000000000") << "ymm0h of an image without AVX state";
}

TEST_F(GdbSession, RegisterWritesGoToTheSelectedThread) {
  EXPECT_EQ(ask("Hg11"), "OK");
  EXPECT_EQ(ask("P0=0100000000000000"), "OK");
  ASSERT_EQ(target.writes, std::vector<ThreadId>{kWorker});
  EXPECT_EQ(target.state[kWorker].gpr[0], 1u);
  EXPECT_EQ(target.state[kMain].gpr[0], 0x1000u) << "the other thread is untouched";
  EXPECT_EQ(ask("P11=00030000"), "OK");
  EXPECT_EQ(target.state[kWorker].rflags, 0x300u);
  EXPECT_EQ(ask("P3c=" + std::string(32, '1')), "E01") << "ymm0h without AVX";
  EXPECT_EQ(ask("P0=01"), "E01") << "a value of the wrong size";
  EXPECT_EQ(ask("Hg99"), "E01") << "no such thread";

  // G writes them all: what g read, with rbx changed.
  std::string all = ask("g");
  all.replace(16, 16, hex64(0xfeed));
  EXPECT_EQ(ask("G" + all), "OK");
  EXPECT_EQ(target.state[kWorker].gpr[1], 0xfeedu);
  EXPECT_EQ(target.state[kWorker].rip, 0x0123456789abcdefu);
  EXPECT_EQ(ask("G" + all.substr(2)), "E01") << "one byte short";
}

TEST_F(GdbSession, Memory) {
  EXPECT_EQ(ask("m1000,4"), "00010203");
  EXPECT_EQ(ask("m10fe,8"), "feff") << "fewer bytes at the end of what is readable";
  EXPECT_EQ(ask("m5000,4"), "E0e") << "EFAULT";
  EXPECT_EQ(ask("m1000"), "E01");
  EXPECT_EQ(ask("M1010,2:abcd"), "OK");
  EXPECT_EQ(target.memory[0x10], 0xab);
  EXPECT_EQ(target.memory[0x11], 0xcd);
  EXPECT_EQ(ask(std::string("X1020,3:}\x03" "a}]")), "OK");
  EXPECT_EQ(target.memory[0x20], '#');
  EXPECT_EQ(target.memory[0x21], 'a');
  EXPECT_EQ(target.memory[0x22], '}');
  EXPECT_EQ(ask("X1020,0:"), "OK") << "gdb's probe for X";
  EXPECT_EQ(ask("X1020,2:a"), "E01") << "length and data disagree";
  EXPECT_EQ(ask("M5000,1:00"), "E0e");
}

TEST_F(GdbSession, BreakpointsAndWatchpoints) {
  EXPECT_EQ(ask("Z0,1000,1"), "OK");
  EXPECT_EQ(ask("Z1,1004,1"), "OK");
  EXPECT_EQ(ask("Z2,2000,4"), "OK");
  EXPECT_EQ(ask("Z3,2008,8"), "OK");
  EXPECT_EQ(ask("Z4,2010,1"), "") << "unsupported: gdb falls back";
  EXPECT_EQ(ask("Z2,dead,1"), "E1c") << "ENOSPC";
  EXPECT_EQ(ask("Z9,1000,1"), "");
  EXPECT_EQ(ask("z2,2000,4"), "OK");
  const std::vector<InsertedBreakpoint> inserted = {{BreakpointType::kSoftware, 0x1000, 1},
                                                    {BreakpointType::kHardware, 0x1004, 1},
                                                    {BreakpointType::kWrite, 0x2000, 4},
                                                    {BreakpointType::kRead, 0x2008, 8}};
  EXPECT_EQ(target.inserted, inserted);
  EXPECT_EQ(target.removed, (std::vector<InsertedBreakpoint>{{BreakpointType::kWrite, 0x2000, 4}}));
}

TEST_F(GdbSession, VContResumesPerThread) {
  EXPECT_EQ(ask("vCont;s:10;c", Session::Next::kRunning), "");
  ASSERT_EQ(target.resumed.size(), 1u);
  const ResumeRequest& r = target.resumed[0];
  EXPECT_EQ(r.action_for(kMain).kind, ResumeKind::kStep);
  EXPECT_EQ(r.action_for(kWorker).kind, ResumeKind::kContinue);

  ask("vCont;C1e:11;t", Session::Next::kRunning);
  const ResumeRequest& s = target.resumed[1];
  EXPECT_EQ(s.action_for(kWorker).kind, ResumeKind::kContinue);
  EXPECT_EQ(s.action_for(kWorker).signal, SIGUSR1) << "GDB's 30 is Linux's 10";
  EXPECT_EQ(s.action_for(kMain).kind, ResumeKind::kStay);

  // The leftmost action that names a thread wins.
  ask("vCont;s:11;c:11;c", Session::Next::kRunning);
  EXPECT_EQ(target.resumed[2].action_for(kWorker).kind, ResumeKind::kStep);
  EXPECT_EQ(ask("vCont;x"), "E01");
}

TEST_F(GdbSession, LegacyResume) {
  ask("?");
  ask("s", Session::Next::kRunning);
  const ResumeRequest& r = target.resumed.back();
  EXPECT_EQ(r.action_for(kMain).kind, ResumeKind::kStep) << "the stopped thread steps";
  EXPECT_EQ(r.action_for(kWorker).kind, ResumeKind::kStay) << "the others stay for a step";
  ask("C0b", Session::Next::kRunning);
  EXPECT_EQ(target.resumed.back().action_for(kMain).signal, SIGSEGV);
  EXPECT_EQ(target.resumed.back().action_for(kWorker).kind, ResumeKind::kContinue);
  EXPECT_EQ(ask("c1000"), "E01") << "a resume address is not supported";
}

TEST_F(GdbSession, AStopPendingAtResumeIsTheReply) {
  target.pending = StopEvent{StopReason::kSoftwareBreakpoint, kWorker, SIGTRAP, 0x1000};
  ask("qSupported:swbreak+");
  EXPECT_EQ(ask("vCont;c"), "T05thread:11;swbreak:;");
}

TEST_F(GdbSession, StopReplies) {
  EXPECT_EQ(stop({StopReason::kSoftwareBreakpoint, kMain, SIGTRAP, 0x1000}), "T05thread:10;")
      << "no swbreak: gdb did not announce it";
  ask("qSupported:swbreak+;hwbreak+");
  EXPECT_EQ(stop({StopReason::kSoftwareBreakpoint, kMain, SIGTRAP, 0x1000}), "T05thread:10;swbreak:;");
  EXPECT_EQ(stop({StopReason::kHardwareBreakpoint, kMain, SIGTRAP, 0}), "T05thread:10;hwbreak:;");
  EXPECT_EQ(stop({StopReason::kWatch, kWorker, SIGTRAP, 0x2000}), "T05thread:11;watch:2000;");
  EXPECT_EQ(stop({StopReason::kReadWatch, kWorker, SIGTRAP, 0x2008}), "T05thread:11;rwatch:2008;");
  EXPECT_EQ(stop({StopReason::kAccessWatch, kWorker, SIGTRAP, 0x2010}), "T05thread:11;awatch:2010;");
  EXPECT_EQ(stop({StopReason::kSignal, kMain, SIGSEGV, 0}), "T0bthread:10;");
  EXPECT_EQ(ask("g").substr(0, 16), hex64(0x1000)) << "registers of the thread that stopped";
  EXPECT_FALSE(session.ended());
  EXPECT_EQ(stop({StopReason::kExited, kMain, 3, 0}), "W03");
  EXPECT_TRUE(session.ended());
}

TEST_F(GdbSession, DeathBySignalIsReportedInGdbsNumbers) {
  EXPECT_EQ(stop({StopReason::kKilled, kMain, SIGBUS, 0}), "X0a");
  EXPECT_TRUE(session.ended());
}

TEST_F(GdbSession, Threads) {
  EXPECT_EQ(ask("qfThreadInfo"), "m10,11");
  EXPECT_EQ(ask("qsThreadInfo"), "l");
  EXPECT_EQ(ask("T11"), "OK");
  EXPECT_EQ(ask("T12"), "E01");
  EXPECT_EQ(ask("qThreadExtraInfo,11"), "764350552031") << "\"vCPU 1\" in hex";
  EXPECT_EQ(ask("Hc-1"), "OK");
  EXPECT_EQ(ask("Hg0"), "OK");
}

TEST_F(GdbSession, TransfersTheTargetDescriptionInPieces) {
  const std::string first = ask("qXfer:features:read:target.xml:0,40");
  ASSERT_EQ(first.size(), 1u + 0x40);
  EXPECT_EQ(first[0], 'm') << "more to come";
  EXPECT_EQ(first.substr(1, 21), "<?xml version=\"1.0\"?>");
  std::string document = first.substr(1);
  for (std::uint64_t offset = 0x40;; offset += 0x400) {
    char packet[64];
    std::snprintf(packet, sizeof packet, "qXfer:features:read:target.xml:%lx,400", static_cast<unsigned long>(offset));
    const std::string piece = ask(packet);
    ASSERT_FALSE(piece.empty());
    document += piece.substr(1);
    if (piece[0] == 'l') break;
    ASSERT_EQ(piece[0], 'm');
  }
  EXPECT_TRUE(document.ends_with("</target>")) << document;
  EXPECT_NE(document.find("<architecture>i386:x86-64</architecture>"), std::string::npos);
  EXPECT_NE(document.find("<reg name=\"rip\" bitsize=\"64\" type=\"code_ptr\" regnum=\"16\"/>"), std::string::npos);
  EXPECT_NE(document.find("<reg name=\"orig_rax\" bitsize=\"64\" type=\"int\" regnum=\"57\" group=\"system\"/>"),
            std::string::npos);
  EXPECT_EQ(document.find("org.gnu.gdb.i386.avx"), std::string::npos) << "no AVX on this target";
  EXPECT_EQ(ask("qXfer:features:read:other.xml:0,100"), "E00");
}

TEST_F(GdbSession, TransfersAuxvAndTheExecutable) {
  EXPECT_EQ(ask("qXfer:exec-file:read::0,100"), "l/usr/bin/program");
  EXPECT_EQ(ask("qXfer:exec-file:read::5,3"), "mbin");
  const std::string auxv = ask("qXfer:auxv:read::0,100");
  // The bytes escaped: 0x21 is '!', no escapes needed; then the end.
  EXPECT_EQ(auxv, std::string("m") + target.auxv);
  EXPECT_EQ(ask("qXfer:auxv:read::10,100"), "l");
}

TEST_F(GdbSession, PassSignals) {
  EXPECT_EQ(ask("QPassSignals:e;14;1e"), "OK");
  // GDB's 14 SIGALRM (14), 20 SIGCHLD (17), 30 SIGUSR1 (10).
  EXPECT_EQ(target.passed, (1ull << 13) | (1ull << 16) | (1ull << 9));
  EXPECT_EQ(ask("QPassSignals:"), "OK");
  EXPECT_EQ(target.passed, 0u);
  EXPECT_EQ(ask("QPassSignals:zz"), "E01");
}

TEST_F(GdbSession, DetachAndKill) {
  EXPECT_EQ(ask("D", Session::Next::kReplyAndClose), "OK");
  EXPECT_TRUE(target.detached);
  EXPECT_FALSE(target.killed);
  session.handle("k");
  EXPECT_TRUE(target.killed);
  EXPECT_TRUE(session.ended());
}

}  // namespace
}  // namespace dunk::debug
