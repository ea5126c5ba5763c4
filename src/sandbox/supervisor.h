// The sandbox's supervisor, inside the layer: the process-wide state, one
// ProgramThread per thread of the untrusted program, and the handlers of
// the calls the supervisor serves itself rather than pass on.
//
//   run_thread(t)   the loop of one program thread, on its own host thread
//                   (a vCPU): run_in_ring3 until a system call or an
//                   exception stops the run, serve it, deliver the signals
//                   that arrived, back to ring 3
//   serve_call      policy decision, then an emulated call (tables below)
//                   or the generic path: copies (copies.h), one forwarded
//                   call, copies back
//
// Everything here runs in guest ring 0 as ordinary code of the dunk
// process, outside the ring-3 dispatch (the run has stopped): it may
// allocate and take locks; the program shares none of its libc.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "abi/signal.h"
#include "abi/walk.h"
#include "base/lock.h"
#include "core/signals.h"
#include "dunk/trap_frame.h"
#include "sandbox/call_log.h"
#include "sandbox/copies.h"
#include "sandbox/limits.h"
#include "sandbox/network.h"
#include "sandbox/region.h"
#include "sandbox/report.h"
#include "sandbox/runtime.h"

namespace dunk::sandbox {

// A signal the supervisor's host-level handler took for the program, on its
// way to the program's handler in ring 3.
struct ProgramSignal {
  std::uint8_t info[abi::kSiginfoSize];
  abi::Sigaction action;  // the program's action when it arrived
};

// Signals taken by the handler and not yet delivered; one producer (the
// handler) and one consumer (the loop), both on the thread itself.
struct SignalQueue {
  static constexpr unsigned kSize = 64;
  ProgramSignal slots[kSize];
  std::atomic<std::uint32_t> head{0}, tail{0};
  // The slots before this count were taken during a call with a temporary
  // mask (sigsuspend, ppoll, pselect6, epoll_pwait): the kernel decided
  // them under that mask, and the mask it put back when the call returned
  // must not hold them back (signal_calls.cc, deliver_signals).
  std::uint32_t taken_under_call_mask = 0;
  bool empty() const noexcept { return head.load(std::memory_order_acquire) == tail.load(std::memory_order_acquire); }
};

struct ProgramThread {
  TrapFrame frame{};           // ring 3's registers
  std::uint64_t fs_base = 0;   // ring 3's FS/GS bases
  std::uint64_t gs_base = 0;
  std::byte* fpu = nullptr;    // ring 3's XSAVE image (64-byte aligned)
  std::byte* fpu_scratch = nullptr;  // for rt_sigreturn's checks
  bool fpu_live = false;       // false: the initial state
  abi::SignalStack altstack = abi::kNoSignalStack;
  std::uint64_t clear_child_tid = 0;  // set_tid_address, CLONE_CHILD_CLEARTID
  std::uint64_t set_child_tid = 0;    // CLONE_CHILD_SETTID, written before the first instruction
  std::uint64_t robust_list = 0;      // set_robust_list (kept, never walked)
  std::uint64_t robust_list_size = 0;
  long tid = 0;
  bool main = false;           // the process's first thread (the one an execve runs on)
  // The host process's first thread, not a pthread of dunk's: its exit is
  // a raw exit (no pthread stack or ProgramThread of dunk's to free). Set
  // by register_thread on the thread itself; a fork child keeps it.
  bool host_leader = false;
  // The stop (ThreadStop::generation) the thread is parked in at the top
  // of its loop while another thread's execve stops the others; 0: none.
  // Guarded by ThreadStop::lock.
  std::uint32_t parked_in = 0;
  std::atomic<bool> parking{false};  // on its way there: its mask is the park's
  // The last ring-3 page fault taken for a stale TLB entry (retried once).
  std::uint64_t last_fault_rip = 0, last_fault_address = 0;
  SignalQueue signals;
  Scratch scratch;
  // The copies of the call being served, while they exist: reports decode
  // its arguments from them (CallCopies::read_as_copied).
  const CallCopies* copies = nullptr;

  ProgramThread() noexcept;
  ~ProgramThread();
  ProgramThread(const ProgramThread&) = delete;
  ProgramThread& operator=(const ProgramThread&) = delete;
};

// Marks `copies` as the thread's call's copies for as long as it lives.
class CopiesInUse {
 public:
  CopiesInUse(ProgramThread& t, const CallCopies& copies) noexcept : t_(t) { t_.copies = &copies; }
  ~CopiesInUse() { t_.copies = nullptr; }
  CopiesInUse(const CopiesInUse&) = delete;
  CopiesInUse& operator=(const CopiesInUse&) = delete;

 private:
  ProgramThread& t_;
};

// The thread the calling host thread runs, or null.
ProgramThread* current_thread() noexcept;
void set_current_thread(ProgramThread* t) noexcept;

// The signal that stops program threads for an execve (thread_stop.cc):
// glibc's SIGCANCEL, which glibc never lets a program block. Its host
// disposition is always the supervisor's; the program's action for it is
// kept in the table and applied by the supervisor's handler.
inline constexpr int kStopSignal = 32;

// Every program thread, and an execve's request that the others park
// (thread_stop.cc).
struct ThreadStop {
  enum class Verdict : std::uint8_t { kGoOn, kEnd };
  Lock lock;  // guards what follows but the atomics
  std::vector<ProgramThread*> threads;  // every live program thread
  std::atomic<bool> requested{false};   // an execve asks the others to park
  ProgramThread* owner = nullptr;       // the thread whose execve asks
  std::uint32_t generation = 0;         // bumped by every stop (never 0 once one began)
  // What marks the supervisor's kStopSignal (si_value): a fresh random
  // value per stop, the last kCookies kept, since a kick may still be
  // pending (blocked) in a thread when the next stop begins.
  static constexpr std::size_t kCookies = 8;
  std::atomic<std::uint64_t> cookies[kCookies] = {};
  std::atomic<std::uint32_t> parked_word{0};   // bumped when a thread parks
  std::atomic<std::uint32_t> verdict_word{0};  // bumped when the verdict is given
  Verdict verdict = Verdict::kGoOn;
  // kEnd: the thread that performs the execve when it is not the owner (the
  // process's first thread), what it runs, and the threads that end.
  ProgramThread* successor = nullptr;
  void (*task)(ProgramThread&, void*) = nullptr;
  void* task_context = nullptr;
  std::vector<long> ending;
};

// What the whole sandboxed process shares.
struct Sandbox {
  const Policy* policy = nullptr;
  OnViolation on_violation = OnViolation::kPolicy;
  Region region;
  Reporter reporter;
  std::size_t fpu_size = 0;
  std::uint64_t xcr0 = 0;
  // The program's signal actions (what rt_sigaction reports); changed
  // under signal_lock, read by the host handler at any moment.
  Lock signal_lock;
  core::SignalTable actions;
  // The program break (brk), inside the region.
  std::uint64_t brk_start = 0, brk = 0, brk_limit = 0;
  // System V segments attached by shmat: address -> size.
  std::map<std::uint64_t, std::uint64_t> shm;
  // The vDSO the program gets (AT_SYSINFO_EHDR), 0 when there is none.
  std::uint64_t vdso = 0;
  std::uint64_t pid = 0;
  // How many program threads are alive (exit of the last ends the process).
  std::atomic<int> threads{0};
  // ---- limits/network ----
  Limits limits;  // --rlimit-*, --max-threads; the program's RLIMIT_AS (limits.h)
  const NetworkPolicy* network = nullptr;  // --unshare-net, --allow-* (network.h); null: none
  CallLog* learn = nullptr;                // --learn: every call noted (call_log.h); null: none
  ThreadStop stop;
  // The program's POSIX timers (timer_create's ids): an execve deletes
  // them, as Linux's does; a fork child has none.
  Lock timers_lock;
  std::vector<int> timers;
};

Sandbox& sandbox() noexcept;

// ---- The loop and the calls ---------------------------------------------

[[noreturn]] void run_thread(ProgramThread& t) noexcept;
// Starts a new host thread for a program thread and returns its tid (or
// -errno); `t` is handed over. The tid is written at `parent_tid` (in the
// region; 0: nowhere) before the thread's first instruction. The caller
// has counted the thread in Sandbox::threads (claim_thread_slot).
long start_program_thread(ProgramThread* t, std::uint64_t parent_tid) noexcept;

// A call the supervisor serves itself: the program's registers in `t.frame`
// (RAX the number), the result goes into t.frame.rax.
using CallHandler = void (*)(ProgramThread& t, const abi::Call& call) noexcept;
// The handler for `nr`, or null for the generic path.
CallHandler emulated(int nr) noexcept;

// Memory (memory_calls.cc).
void sys_mmap(ProgramThread& t, const abi::Call& call) noexcept;
void sys_munmap(ProgramThread& t, const abi::Call& call) noexcept;
void sys_mprotect(ProgramThread& t, const abi::Call& call) noexcept;
void sys_mremap(ProgramThread& t, const abi::Call& call) noexcept;
void sys_brk(ProgramThread& t, const abi::Call& call) noexcept;
void sys_shmat(ProgramThread& t, const abi::Call& call) noexcept;
void sys_shmdt(ProgramThread& t, const abi::Call& call) noexcept;
// Processes and threads (process_calls.cc).
void sys_clone(ProgramThread& t, const abi::Call& call) noexcept;
void sys_exit(ProgramThread& t, const abi::Call& call) noexcept;
void sys_exit_group(ProgramThread& t, const abi::Call& call) noexcept;
void sys_arch_prctl(ProgramThread& t, const abi::Call& call) noexcept;
void sys_set_tid_address(ProgramThread& t, const abi::Call& call) noexcept;
void sys_set_robust_list(ProgramThread& t, const abi::Call& call) noexcept;
void sys_get_robust_list(ProgramThread& t, const abi::Call& call) noexcept;
void sys_execve(ProgramThread& t, const abi::Call& call) noexcept;
// timer_create and timer_delete, forwarded, their ids kept (Sandbox::timers).
void sys_timer_create(ProgramThread& t, const abi::Call& call) noexcept;
void sys_timer_delete(ProgramThread& t, const abi::Call& call) noexcept;
void sys_close_range(ProgramThread& t, const abi::Call& call) noexcept;
// Signals (signal_calls.cc).
void sys_rt_sigaction(ProgramThread& t, const abi::Call& call) noexcept;
void sys_rt_sigreturn(ProgramThread& t, const abi::Call& call) noexcept;
void sys_sigaltstack(ProgramThread& t, const abi::Call& call) noexcept;

// Refuses a call dunk never passes on (it would reach the supervisor), with
// a report: ptrace, seccomp, ... (process_calls.cc).
void refuse(ProgramThread& t, const abi::Call& call, long error, const char* why) noexcept;
// One report line for a call: its arguments decoded (abi::format_call with
// `result` as the answer the program gets), the rule, thread and RIP.
void report_call(ProgramThread& t, const abi::Call& call, const char* event, const char* answer,
                 const char* action, const char* rule, const char* detail, long result) noexcept;

// Refuses `call` (EFAULT, with a report) and returns true when a pointer it
// passes, [address, address + size), is not 0 and lies outside the
// program's memory: what the generic path's copies do, for the calls the
// supervisor serves itself.
bool refuse_outside(ProgramThread& t, const abi::Call& call, std::uint64_t address, std::size_t size) noexcept;

// The generic path: copies, one forwarded call, copies back (supervisor.cc).
long forward_with_copies(ProgramThread& t, const abi::Call& call) noexcept;
// The same with the kernel's part done by `perform` instead of one forward
// of the call on the copies (`copied`): the file-system view's calls, which
// the kernel gets rewritten (fs_calls.cc). It returns the kernel's answer
// (kRestartForSignal included); the copies go back as for the call itself.
using Perform = long (*)(ProgramThread& t, const abi::Call& call, const abi::Call& copied, void* context) noexcept;
long forward_with_copies(ProgramThread& t, const abi::Call& call, Perform perform, void* context) noexcept;
// forward_with_copies, and its result to ring 3, or ring 3 back at its
// SYSCALL when a signal's handler must run first (kRestartForSignal).
// Returns that result, for a handler that keeps something of it.
long answer_forwarded(ProgramThread& t, const abi::Call& call) noexcept;
// Performs a call on the host as it is, unless a signal for the program
// is queued (head != tail: kRestartForSignal, forward.S).
extern "C" long dunk_sandbox_forward(const abi::Call* call, const std::atomic<std::uint32_t>* head,
                                     const std::atomic<std::uint32_t>* tail);
extern "C" const char dunk_sandbox_forward_check[], dunk_sandbox_forward_insn[], dunk_sandbox_forward_done[];
// The length of SYSCALL: ring 3 goes back by it to make a call again.
inline constexpr std::size_t kSyscallInsnLength = 2;
// What a forwarded call returns when a signal interrupted it that the
// program must see before the call runs again (see signals.cc).
inline constexpr long kRestartForSignal = -512;

// ---- Stopping the other threads for execve (thread_stop.cc) ------------------

void register_thread(ProgramThread& t) noexcept;
void unregister_thread(ProgramThread& t) noexcept;
// In a fork child: `t` is the only thread, nothing is being stopped.
void reset_thread_stop_after_fork(ProgramThread& t) noexcept;
// At the top of every thread's loop: parks while another thread's execve
// stops the others, then goes on, ends the thread, or runs the execve
// handed over to it.
void park_if_stopping(ProgramThread& t) noexcept;
// Whether a kStopSignal is the supervisor's (not the program's own).
bool is_stop_kick(const siginfo_t& info) noexcept;
enum class StopOutcome {
  kStopped,  // every other thread is parked
  kBusy,     // another thread's execve is stopping the others
  kBlocked,  // thread `blocker` blocks kStopSignal: everything goes on again
  kNoQueue,  // kStopSignal could not be queued to thread `blocker` (EAGAIN:
             // RLIMIT_SIGPENDING): everything goes on again
  kTimedOut, // thread `blocker` did not park and no thread did for
             // kStopPatienceNs: everything goes on again
};
// How long a stop waits without any thread parking before it gives up.
inline constexpr long kStopPatienceNs = 5'000'000'000;
StopOutcome stop_other_threads(ProgramThread& t, long& blocker) noexcept;
void let_threads_go_on(ProgramThread& t) noexcept;
// The point of no return: every parked thread but `successor` ends. With a
// successor, it runs task(*successor, context) and the caller ends too.
void end_other_threads(ProgramThread& t, ProgramThread* successor, void (*task)(ProgramThread&, void*),
                       void* context) noexcept;
// By the thread that performs the execve: returns once the ended threads
// are gone; `t` is then the process's only thread.
void wait_for_ended_threads(ProgramThread& t) noexcept;
// Signals the monitor took for this vCPU, handed to the supervisor's
// handler now (supervisor.cc).
void take_monitor_signals() noexcept;

// ---- Signals (signal_calls.cc) ----------------------------------------------

// The host thread's mask (the program thread's): block_signals adds `add`
// and returns the mask before; set_signal_mask sets it (SIGKILL and SIGSTOP
// aside). kAllSignals: every signal that can be blocked.
inline constexpr std::uint64_t kAllSignals = ~abi::kUnblockable;
std::uint64_t block_signals(std::uint64_t add) noexcept;
void set_signal_mask(std::uint64_t mask) noexcept;
// A siginfo's signal number.
int signal_of(const std::uint8_t* info) noexcept;
// Installs the host handler for `sig` that matches the program's action.
long install_host_action(int sig, const abi::Sigaction& program) noexcept;
// Delivers the signals the host handler took for `t`: a frame each, on its
// ring-3 stack.
void deliver_signals(ProgramThread& t) noexcept;
// An exception in ring 3 (t.frame.vector, error_code, cr2): its signal.
void serve_fault(ProgramThread& t) noexcept;
// The kernel's force_sig for a synchronous signal: the program's handler if
// it has one and does not block it, else death by it. `info` may be null
// (a kernel-made siginfo with `code`).
void force_signal(ProgramThread& t, int sig, int code, std::uint64_t address, std::uint64_t trapno,
                  std::uint64_t error, const std::uint8_t* info = nullptr) noexcept;
// The process dies by `sig` (its default action), after a report line.
[[noreturn]] void die_by_signal(int sig, const char* why) noexcept;
// The same from the supervisor's signal handler, which may have interrupted
// this very thread in the reporter: no report line, and what is buffered
// written only if the reporter's lock is free within about 100 ms.
[[noreturn]] void die_by_signal_in_handler(int sig) noexcept;

// ---- Memory of the program ----------------------------------------------------

// Copies between the program and the supervisor, checked against the region.
bool read_program(void* to, std::uint64_t from, std::size_t size) noexcept;
bool write_program(std::uint64_t to, const void* from, std::size_t size) noexcept;

// ---- Loading (loader.cc) ------------------------------------------------------

struct LoadedProgram {
  std::uint64_t entry = 0;        // where ring 3 starts (the interpreter's entry, if any)
  std::uint64_t stack_pointer = 0;
  bool executable_stack = false;
};
struct LoadFailure {
  int err = 0;              // errno: ENOENT, EACCES, ENOEXEC, ENOMEM, ...
  std::string what;         // what failed
};
// Loads `path` (an ELF, or a #! script of one) into the region, with argv
// and envp on a new stack, as execve does. On failure the region may hold
// parts of the image.
// `program_fd` >= 0: the program's descriptor names the file (execveat's
// AT_EMPTY_PATH), `path` only what AT_EXECFN says.
bool load_program(const std::string& path, const std::vector<std::string>& argv,
                  const std::vector<std::string>& envp, LoadedProgram& out, LoadFailure& failure,
                  int program_fd = -1) noexcept;
// Opens what an execve of `path` (or of the program's descriptor
// `program_fd`, when >= 0) runs, through the file-system view if there is
// one, and checks it as execve does: a regular file the caller may
// execute. The descriptor, or -errno (EACCES for what is not executable).
long open_executable(const std::string& path, int program_fd) noexcept;

}  // namespace dunk::sandbox
