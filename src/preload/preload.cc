// libdunk-preload.so: what `dunk exec` puts in LD_PRELOAD. Its constructor
// moves the main thread into VM mode before the program's main() runs (after
// libc and the libraries it needs have initialised, since the dynamic linker
// runs a preloaded object's constructors after those of its dependencies).
// LD_PRELOAD is inherited, so programs the process executes enter too, and
// fork children enter VMs of their own (EnterOptions::follow_fork).
//
// Before that, while the dynamic linker relocates this library, an IFUNC
// resolver puts a runtime that must come first in the library list (an
// AddressSanitizer runtime) in front of this library (library_order.h).
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "base/syscall.h"
#include "core/config.h"
#include "core/machine.h"
#include "core/text.h"
#include "debug/gdb_server.h"
#include "dunk/dunk.h"
#include "preload/library_order.h"

// Provided by the dynamic linker: the initial stack pointer (argc, argv,
// envp, auxv follow it) and the debugger's view of the loaded objects.
extern "C" void* __libc_stack_end;
// Provided by the static linker: this library's ELF header, i.e. its base.
extern "C" const ElfW(Ehdr) __ehdr_start;

namespace dunk::preload {
namespace {

constexpr std::string_view kLdPreload = "LD_PRELOAD=";

// What the kernel put on the initial stack (System V x86-64 ABI, "Process
// Initialization"): argc, argv[argc], NULL, envp..., NULL, auxv.
struct InitialStack {
  char** argv;
  char** envp;
  const ElfW(auxv_t) * auxv;
};

InitialStack initial_stack() noexcept {
  auto* words = static_cast<char**>(__libc_stack_end);
  const auto argc = reinterpret_cast<std::uintptr_t>(words[0]);
  char** argv = words + 1;
  char** envp = argv + argc + 1;
  char** end = envp;
  while (*end != nullptr) ++end;
  return {argv, envp, reinterpret_cast<const ElfW(auxv_t)*>(end + 1)};
}

std::uint64_t aux_value(const ElfW(auxv_t) * auxv, std::uint64_t type) noexcept {
  for (; auxv->a_type != AT_NULL; ++auxv) {
    if (auxv->a_type == type) return auxv->a_un.a_val;
  }
  return 0;
}

// The last entry that starts with `prefix`: the one the dynamic linker used.
char** find_variable(char** envp, std::string_view prefix) noexcept {
  char** found = nullptr;
  for (; *envp != nullptr; ++envp) {
    if (std::string_view(*envp).starts_with(prefix)) found = envp;
  }
  return found;
}

// This library's path as the dynamic linker loaded it, and the path of the
// object it loaded next (skipping the vDSO, which has no file), in the
// order dl_iterate_phdr reports them.
struct Neighbours {
  std::string_view self;
  std::string_view next;
};

Neighbours neighbours() noexcept {
  const auto base = reinterpret_cast<ElfW(Addr)>(&__ehdr_start);
  Neighbours found;
  bool seen_self = false;
  for (const link_map* map = _r_debug.r_map; map != nullptr; map = map->l_next) {
    std::string_view name = map->l_name != nullptr ? map->l_name : "";
    if (name.empty() || name.starts_with("linux-vdso") || name.starts_with("linux-gate")) continue;
    if (map->l_addr == base) {
      found.self = name;
      seen_self = true;
    } else if (seen_self) {
      found.next = name;
      break;
    }
  }
  return found;
}

// Memory that outlives this call and needs no libc: the strings built here
// go into the environment.
char* allocate(std::size_t size) noexcept {
  long p = sys::call(SYS_mmap, 0, static_cast<long>(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return sys::failed(p) ? nullptr : reinterpret_cast<char*>(p);
}

// "LD_PRELOAD=" + first + ":" + second (second without separator if first is empty).
char* preload_variable(std::string_view first, std::string_view second) noexcept {
  const std::size_t size = kLdPreload.size() + first.size() + 1 + second.size() + 1;
  char* text = allocate(size);
  if (text == nullptr) return nullptr;
  char* out = text;
  for (char c : kLdPreload) *out++ = c;
  for (char c : first) *out++ = c;
  if (!first.empty()) *out++ = ':';
  for (char c : second) *out++ = c;
  *out = '\0';
  return text;
}

// "dunk: cannot put RUNTIME first in LD_PRELOAD: WHY (errno N)"; the program
// goes on, and its runtime refuses to run as it would behind any library.
void complain(std::string_view runtime, const char* why, long error) noexcept {
  char line[768];
  core::TextBuffer text(line, sizeof line);
  char name[512];
  std::size_t n = runtime.size() < sizeof name - 1 ? runtime.size() : sizeof name - 1;
  for (std::size_t i = 0; i < n; ++i) name[i] = runtime[i];
  name[n] = '\0';
  text.append("dunk: cannot put ").append(name).append(" first in LD_PRELOAD: ").append(why);
  text.append(" (errno ").dec(-error).append(")\n");
  sys::call(SYS_write, 2, reinterpret_cast<long>(text.c_str()), static_cast<long>(text.length()));
}

bool same_file(const char* a, const char* b) noexcept {
  struct stat sa {};
  struct stat sb {};
  if (sys::failed(sys::call(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>(a), reinterpret_cast<long>(&sa), 0))) {
    return false;
  }
  if (sys::failed(sys::call(SYS_newfstatat, AT_FDCWD, reinterpret_cast<long>(b), reinterpret_cast<long>(&sb), 0))) {
    return false;
  }
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Executes the program again, with the same arguments and environment but
// `runtime` in front of LD_PRELOAD. Returns only if that failed.
void execute_again(const InitialStack& stack, char** preload, std::string_view runtime) noexcept {
  std::size_t count = 0;
  while (stack.envp[count] != nullptr) ++count;
  auto** envp = reinterpret_cast<char**>(allocate((count + 1) * sizeof(char*)));
  char* variable = preload_variable(runtime, tail(*preload, kLdPreload.size()));
  if (envp == nullptr || variable == nullptr) return complain(runtime, "no memory", -ENOMEM);
  for (std::size_t i = 0; i <= count; ++i) envp[i] = &stack.envp[i] == preload ? variable : stack.envp[i];
  // The file the kernel executed, by the name it was given (AT_EXECFN, what
  // the new image reports again) when that still names it; not a script's
  // name, since argv already holds the interpreter's arguments.
  const auto* execfn = reinterpret_cast<const char*>(aux_value(stack.auxv, AT_EXECFN));
  const char* path = execfn != nullptr && same_file(execfn, "/proc/self/exe") ? execfn : "/proc/self/exe";
  long error = sys::call(SYS_execve, reinterpret_cast<long>(path), reinterpret_cast<long>(stack.argv),
                         reinterpret_cast<long>(envp));
  complain(runtime, "executing the program again failed", error);
}

// Runs while the dynamic linker relocates this library: after it has loaded
// every initial library, before any of their code (the program's
// .preinit_array, where GCC's AddressSanitizer checks the order, comes
// later). Only raw system calls: libc is not initialised yet.
void place_runtime_first() noexcept {
  const InitialStack stack = initial_stack();
  // A set-user-ID program, or the dynamic linker run as a command (whose
  // arguments the linker has rewritten): leave them as they are.
  if (aux_value(stack.auxv, AT_SECURE) != 0 || aux_value(stack.auxv, AT_BASE) == 0) return;
  char** preload = find_variable(stack.envp, kLdPreload);
  if (preload == nullptr) return;
  const Neighbours libraries = neighbours();
  const Decision decision = decide(tail(*preload, kLdPreload.size()), libraries.self,
                                   libraries.next);
  switch (decision.step) {
    case Step::kNothing:
      return;
    case Step::kExecuteAgain:
      return execute_again(stack, preload, decision.value);
    case Step::kRestore:
      // Before anyone reads it: the environment libc hands the program is
      // this very array.
      if (char* variable = preload_variable({}, decision.value); variable != nullptr) *preload = variable;
      return;
  }
}

}  // namespace
}  // namespace dunk::preload

// The IFUNC whose resolver does the work above; the pointer below is the
// relocation that makes the dynamic linker call the resolver at load time.
extern "C" {
static void dunk_preload_startup_done() {}
[[gnu::used]] static void (*dunk_preload_startup_resolver())() {
  dunk::preload::place_runtime_first();
  return dunk_preload_startup_done;
}
}
[[gnu::ifunc("dunk_preload_startup_resolver")]] void dunk_preload_startup();
[[gnu::used]] void (*const volatile dunk_preload_startup_relocation)() = dunk_preload_startup;

namespace {

[[noreturn]] void refuse(const char* what, const dunk::Error& error) {
  // The user asked for VM mode; running natively instead would be a lie.
  char reason[512];
  char line[768];
  int n = std::snprintf(line, sizeof line, "dunk: %s: %s\n", what, dunk::describe(error, reason, sizeof reason));
  if (n > 0) (void)!write(2, line, static_cast<std::size_t>(n) < sizeof line ? n : sizeof line - 1);
  _exit(125);
}

__attribute__((constructor)) void dunk_preload_enter() {
  // The environment, read once (core/config.h): the machine is created
  // with this configuration.
  const dunk::core::MachineConfig config = dunk::core::MachineConfig::from_environment();
  dunk::core::Machine::instance().configure(config);
  // `dunk exec --gdb`: this process is served to gdb and stops at its first
  // instruction in VM mode. Only this one: the programs it executes and its
  // fork children run undebugged.
  if (config.gdb_address[0] != '\0') {
    if (dunk::Status started = dunk::debug::start_gdb_stub(config.gdb_address); !started) {
      refuse("cannot serve gdb", started.error());
    }
    unsetenv(dunk::debug::kGdbEnvironment);
  }
  dunk::Status status = dunk::enter(dunk::EnterOptions{.follow_fork = true});
  if (!status) refuse("cannot enter VM mode", status.error());
}

}  // namespace
