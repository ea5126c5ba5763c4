// Starting the sandbox: the region reserved before anything else, VM mode,
// the page tables' user ranges, then the program loaded and its first
// thread run in ring 3.
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstdio>
#include <cstring>

#include "base/proc_maps.h"
#include "base/syscall.h"
#include "core/machine.h"
#include "dunk/dunk.h"
#include "dunk/ring3.h"
#include "sandbox/fs_view.h"
#include "sandbox/host_layer.h"
#include "sandbox/members.h"
#include "sandbox/supervisor.h"
#include "sandbox/test_switches.h"
#include "sandbox/user_access.h"

namespace dunk::sandbox {
namespace {

StartFailure failure(int status, const char* what, const Error& error) {
  char text[512];
  char why[256];
  std::snprintf(text, sizeof text, "%s: %s", what, error.format(why, sizeof why));
  return StartFailure{status, text};
}

// The ranges ring 3 may reach: the region, and a read-only view of the
// vDSO and its data ([vvar]) for AT_SYSINFO_EHDR.
Status open_to_ring3() noexcept {
  const Region& region = sandbox().region;
  core::UserRange ranges[3];
  unsigned n = 0;
  ranges[n++] = core::UserRange{Hva(region.start()), Hva(region.end())};
  char buffer[MapsReader::kFullLineBuffer];
  MapsReader reader(buffer, sizeof buffer);
  DUNK_TRY(reader.open());
  MapEntry entry;
  while (reader.next(entry) && n < 3) {
    if (entry.path == "[vdso]") {
      ranges[n++] = core::UserRange{entry.start, entry.end, PROT_READ | PROT_EXEC};
      sandbox().vdso = entry.start.value();
    } else if (entry.path == "[vvar]") {
      ranges[n++] = core::UserRange{entry.start, entry.end, PROT_READ};
    }
  }
  DUNK_TRY(reader.status());
  // The kernel's own view of where the vDSO is (the maps line may be absent).
  if (sandbox().vdso != getauxval(AT_SYSINFO_EHDR)) sandbox().vdso = 0;
  return core::Machine::instance().set_user_ranges({ranges, n});
}

// execve's rule for the new program's dispositions: handled signals go back
// to SIG_DFL, ignored ones stay ignored.
void reset_dispositions() noexcept {
  Sandbox& s = sandbox();
  for (int sig = 1; sig <= abi::kMaxSignal; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    abi::Sigaction current{};
    if (sys::call(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&current), 8) != 0) continue;
    const abi::Sigaction program{current.handler == abi::kSigIgn ? abi::kSigIgn : abi::kSigDfl, 0, 0, 0};
    s.actions.set(sig, program);
    // kStopSignal's host action is the supervisor's from the start.
    if (abi::is_handler(current.handler) || sig == kStopSignal) install_host_action(sig, program);
  }
}

int status_for(int err) noexcept {
  if (err == ENOENT || err == ENOTDIR) return 127;
  if (err == EACCES || err == ENOEXEC || err == EPERM || err == ELIBBAD || err == ELOOP || err == EISDIR) return 126;
  return 125;
}

}  // namespace

StartFailure run_sandbox(const SandboxOptions& options) {
  Sandbox& s = sandbox();
  s.policy = options.policy;
  s.on_violation = options.on_violation;
  s.reporter.configure(options.log_fd, options.log_format, sys::call(SYS_getpid));
  if (options.log_fd != 2) add_sandbox_fd(options.log_fd);
  // First: nothing of dunk's may ever be mapped in the region.
  if (Status st = s.region.reserve(); !st) return failure(125, "cannot reserve the untrusted region", st.error());
  s.limits.configure(options.limits);
  if (options.network != nullptr && options.network->active()) s.network = options.network;
  s.learn = options.learn;
  s.region.set_address_space_limit(s.limits.address_space().rlim_cur);
  // Before enter(): the mirror sees the page-fault handler when it starts.
  if (Status st = install_user_access(); !st) return failure(125, "cannot install the supervisor's fault handlers", st.error());
  if (Status st = enter(EnterOptions{.follow_fork = true}); !st) {
    char why[512];
    return StartFailure{125, std::string("cannot enter VM mode: ") + describe(st.error(), why, sizeof why)};
  }
  if (!ring3_can_set_bases()) {
    return StartFailure{125, "this CPU lacks FSGSBASE: the program's ring 3 could not have TLS of its own"};
  }
  if (Status st = open_to_ring3(); !st) return failure(125, "cannot open the untrusted region to ring 3", st.error());
  s.fpu_size = ring3_fpu_size();
  s.xcr0 = core::Machine::instance().xcr0();
  s.pid = static_cast<std::uint64_t>(sys::call(SYS_getpid));
  // The sandbox's processes (members.h): this one first, its fork children
  // as they come. Its signals reach no other process.
  Members* table = Members::create();
  if (table == nullptr || !table->add(static_cast<pid_t>(s.pid))) {
    return StartFailure{125, "cannot map the table of the sandbox's processes"};
  }
  set_members(table);
  reset_dispositions();
  if (options.view != nullptr) {
    // The program starts inside its view, confined to it in the host
    // kernel too, before its first instruction (and before its ELF is
    // opened, through the view).
    if (const long err = options.view->start(options.cwd); err != 0) {
      return failure(125, "cannot enter the file-system view", errno_error("fchdir failed", err));
    }
    if (!test_switches().view_off) set_view(options.view);
    if (options.landlock && !test_switches().no_landlock) {
      if (Status st = apply_landlock(*options.view, options.own_file); !st) {
        return failure(125, "cannot confine the sandbox with Landlock", st.error());
      }
    }
  }

  auto* t = new ProgramThread();
  if (t->fpu == nullptr || t->fpu_scratch == nullptr) return StartFailure{125, "out of memory"};
  if (Status st = t->scratch.init(); !st) return failure(125, "cannot set up the supervisor's copy buffer", st.error());
  t->tid = sys::call(SYS_gettid);
  t->main = true;
  set_current_thread(t);
  s.threads.store(1);
  register_thread(*t);

  LoadedProgram program;
  LoadFailure why;
  if (!load_program(options.path, options.argv, options.envp, program, why)) {
    const char* text = why.err != 0 ? std::strerror(why.err) : "cannot load";
    return StartFailure{status_for(why.err), why.what + ": " + text};
  }
  // As the kernel starts a program: every register 0 but RSP and RIP.
  t->frame = TrapFrame{};
  t->frame.rip = program.entry;
  t->frame.rsp = program.stack_pointer;
  t->frame.rflags = arch::rflags::kIF | arch::rflags::kFixed1;
  t->fpu_live = false;
  // The last step before the program's first instruction: from here on
  // every host call of the process, dunk's and the program's, meets the
  // host filter.
  if (!options.host_filter.empty() && !test_switches().no_host_filter) {
    if (Status st = install_host_filter(options.host_filter.data(), options.host_filter.size()); !st) {
      return failure(125, "cannot install the host's seccomp filter", st.error());
    }
  }
  run_thread(*t);
}

}  // namespace dunk::sandbox
