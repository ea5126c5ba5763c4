#include "tools/program.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "base/unique_fd.h"

namespace dunk::cli {
namespace {

// The kernel follows at most this many #! interpreters (BINPRM_MAX_RECURSION).
constexpr int kMaxInterpreterDepth = 4;

Program found(std::string path) { return Program{.path = std::move(path), .status = 0, .error = {}}; }

Program refuse(int status, const std::string& name, std::string_view reason) {
  return Program{.path = {}, .status = status, .error = fmt::format("{}: {}", name, reason)};
}

// Empty when `path` can be executed; otherwise why not (like execve).
std::string not_executable(const std::string& path, int& status) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    status = errno == ENOENT || errno == ENOTDIR ? kExitNotFound : kExitNotExecutable;
    return std::strerror(errno);
  }
  status = kExitNotExecutable;
  if (S_ISDIR(st.st_mode)) return "Is a directory";
  if (!S_ISREG(st.st_mode) || access(path.c_str(), X_OK) != 0) return std::strerror(EACCES);
  return {};
}

// The dynamic linker runs in secure-execution mode, ignoring LD_PRELOAD,
// when the exec changes the process's credentials (ld.so(8), AT_SECURE).
bool changes_credentials(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return false;
  if ((st.st_mode & S_ISUID) != 0 && st.st_uid != getuid()) return true;
  if ((st.st_mode & S_ISGID) != 0 && (st.st_mode & S_IXGRP) != 0 && st.st_gid != getgid()) return true;
  // File capabilities grant privileges too, except to root, who has them all.
  return getuid() != 0 && getxattr(path.c_str(), "security.capability", nullptr, 0) > 0;
}

// Whether an ELF image has a PT_INTERP program header, i.e. is loaded by a
// dynamic linker. Empty when it can run in VM mode; otherwise why not.
std::string check_elf(int fd, const Elf64_Ehdr& header) {
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_machine != EM_X86_64) {
    return "not an x86-64 program: dunk exec runs x86-64 programs only";
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr)) return {};  // let execve judge it
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph{};
    off_t at = static_cast<off_t>(header.e_phoff + i * sizeof ph);
    if (pread(fd, &ph, sizeof ph, at) != static_cast<ssize_t>(sizeof ph)) return {};
    if (ph.p_type == PT_INTERP) return {};
  }
  return "statically linked: dunk exec enters VM mode through the dynamic linker "
         "(LD_PRELOAD of libdunk-preload.so), so it cannot run static programs";
}

// The interpreter named on a "#!" line, or empty.
std::string interpreter_of(std::string_view head) {
  std::string_view line = head.substr(2, head.find('\n') - 2);
  std::size_t start = line.find_first_not_of(" \t");
  if (start == std::string_view::npos) return {};
  line = line.substr(start);
  return std::string(line.substr(0, line.find_first_of(" \t\r")));
}

// Why a program cannot run in VM mode; empty reason: it can.
struct Verdict {
  int status = 0;
  std::string reason;
};

// Looks at what execve() would load from `path`.
Verdict check_image(const std::string& path, int depth) {
  if (changes_credentials(path)) {
    return {kExitCannotRun,
            "runs with other privileges (set-user-ID, set-group-ID or file capabilities): the dynamic "
            "linker ignores LD_PRELOAD there, so dunk exec cannot run it in VM mode"};
  }
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};  // executable but unreadable: execve will judge it
  union {
    Elf64_Ehdr elf;
    char bytes[256];
  } head{};
  ssize_t n = pread(fd.get(), head.bytes, sizeof head.bytes, 0);
  std::string_view text(head.bytes, n > 0 ? static_cast<std::size_t>(n) : 0);
  if (text.starts_with(ELFMAG)) {
    if (text.size() < sizeof(Elf64_Ehdr)) return {kExitNotExecutable, "truncated ELF file"};
    std::string why = check_elf(fd.get(), head.elf);
    return {why.empty() ? 0 : kExitCannotRun, why};
  }
  if (!text.starts_with("#!")) return {};  // neither: execvp runs it with /bin/sh
  std::string interpreter = interpreter_of(text);
  if (interpreter.empty() || depth >= kMaxInterpreterDepth) return {};
  int status = 0;
  if (std::string why = not_executable(interpreter, status); !why.empty()) {
    return {kExitNotExecutable, fmt::format("{}: bad interpreter: {}", interpreter, why)};
  }
  Verdict inner = check_image(interpreter, depth + 1);
  if (!inner.reason.empty()) inner.reason = fmt::format("interpreter {}: {}", interpreter, inner.reason);
  return inner;
}

// execvp's search: the first executable file named `name` in PATH; if only
// files that cannot be executed were found, EACCES.
Program search_path(const std::string& name) {
  const char* env = std::getenv("PATH");
  std::string_view dirs = env != nullptr ? env : "/bin:/usr/bin";  // glibc's default
  bool denied = false;
  for (std::size_t start = 0; start <= dirs.size();) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string_view::npos) end = dirs.size();
    std::string_view dir = dirs.substr(start, end - start);
    std::string candidate = fmt::format("{}/{}", dir.empty() ? "." : dir, name);
    start = end + 1;
    int status = 0;
    std::string why = not_executable(candidate, status);
    if (why.empty()) return found(std::move(candidate));
    if (status == kExitNotExecutable) denied = true;
  }
  if (denied) return refuse(kExitNotExecutable, name, std::strerror(EACCES));
  return refuse(kExitNotFound, name, "command not found");
}

}  // namespace

Program find_program(const std::string& name) {
  if (name.empty()) return refuse(kExitNotFound, name, "command not found");
  Program program;
  if (name.find('/') != std::string::npos) {
    int status = 0;
    if (std::string why = not_executable(name, status); !why.empty()) return refuse(status, name, why);
    program = found(name);
  } else {
    program = search_path(name);
    if (!program.ok()) return program;
  }
  Verdict verdict = check_image(program.path, 0);
  if (!verdict.reason.empty()) return refuse(verdict.status, name, verdict.reason);
  return program;
}

}  // namespace dunk::cli
