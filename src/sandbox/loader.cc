// Loading a program into the untrusted region as execve does: the ELF's
// segments mapped from the file, its interpreter (the dynamic linker) placed
// like an mmap, a stack with argv, envp and the auxiliary vector. All of it
// is done by the supervisor in VM mode, so no code of the program — not its
// loader, not an IFUNC resolver, not a constructor — ever runs anywhere but
// ring 3.
#include <elf.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/syscall.h"
#include "sandbox/fs_view.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {
namespace {

// How deep #! interpreters may nest (the kernel's BINPRM_MAX_RECURSION).
constexpr int kMaxScriptDepth = 4;
constexpr std::size_t kMaxScriptLine = 256;  // BINPRM_BUF_SIZE
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t kStackGapAbove = 64 * kMiB;   // between the stack and the region's end
constexpr std::uint64_t kMinMmapGap = 128 * kMiB;     // between the stack and mmap's top (Linux's MIN_GAP)

std::uint64_t random_pages(std::uint64_t max_bytes) noexcept {
  std::uint64_t r = 0;
  if (sys::call(SYS_getrandom, reinterpret_cast<long>(&r), sizeof r, 0) != sizeof r) r = 0;
  return max_bytes < kPage ? 0 : page_down(r % max_bytes);
}

class File {
 public:
  File() noexcept = default;
  ~File() {
    if (fd_ >= 0) sys::call(SYS_close, fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  // Opens an executable as execve would check it: a regular file the caller
  // may execute (open_executable).
  int open(const std::string& path, int program_fd = -1) noexcept {
    const long fd = open_executable(path, program_fd);
    if (sys::failed(fd)) return static_cast<int>(-fd);
    fd_ = static_cast<int>(fd);
    return 0;
  }
  int fd() const noexcept { return fd_; }
  bool read_at(void* to, std::size_t size, std::uint64_t offset) const noexcept {
    return sys::call(SYS_pread64, fd_, reinterpret_cast<long>(to), static_cast<long>(size), static_cast<long>(offset)) ==
           static_cast<long>(size);
  }
  long read_some(void* to, std::size_t size) const noexcept {
    return sys::call(SYS_pread64, fd_, reinterpret_cast<long>(to), static_cast<long>(size), 0);
  }

 private:
  int fd_ = -1;
};

struct Elf {
  Elf64_Ehdr header{};
  std::vector<Elf64_Phdr> segments;
  std::string interpreter;
  bool executable_stack = false;
};

bool fail(LoadFailure& failure, int err, std::string what) {
  failure.err = err;
  failure.what = std::move(what);
  return false;
}

bool read_elf(const File& file, const std::string& path, Elf& elf, LoadFailure& failure) {
  Elf64_Ehdr& h = elf.header;
  if (!file.read_at(&h, sizeof h, 0) || std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0) {
    return fail(failure, ENOEXEC, path + ": not an ELF file or script");
  }
  if (h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_ident[EI_DATA] != ELFDATA2LSB || h.e_machine != EM_X86_64) {
    return fail(failure, ENOEXEC, path + ": not an x86-64 ELF file");
  }
  if (h.e_type != ET_EXEC && h.e_type != ET_DYN) return fail(failure, ENOEXEC, path + ": not an executable ELF file");
  if (h.e_phentsize != sizeof(Elf64_Phdr) || h.e_phnum == 0 || h.e_phnum > 4096) {
    return fail(failure, ENOEXEC, path + ": bad program headers");
  }
  elf.segments.resize(h.e_phnum);
  if (!file.read_at(elf.segments.data(), h.e_phnum * sizeof(Elf64_Phdr), h.e_phoff)) {
    return fail(failure, ENOEXEC, path + ": truncated program headers");
  }
  for (const Elf64_Phdr& p : elf.segments) {
    if (p.p_type == PT_GNU_STACK) elf.executable_stack = (p.p_flags & PF_X) != 0;
    if (p.p_type != PT_INTERP) continue;
    if (p.p_filesz < 2 || p.p_filesz > PATH_MAX) return fail(failure, ENOEXEC, path + ": bad PT_INTERP");
    std::string interp(p.p_filesz, '\0');
    if (!file.read_at(interp.data(), p.p_filesz, p.p_offset) || interp.back() != '\0') {
      return fail(failure, ENOEXEC, path + ": bad PT_INTERP");
    }
    interp.pop_back();
    elf.interpreter = interp;
  }
  return true;
}

int prot_of(std::uint32_t flags) noexcept {
  return ((flags & PF_R) != 0 ? PROT_READ : 0) | ((flags & PF_W) != 0 ? PROT_WRITE : 0) |
         ((flags & PF_X) != 0 ? PROT_EXEC : 0);
}

struct Mapped {
  std::uint64_t bias = 0;
  std::uint64_t end = 0;   // the end of the highest segment (brk starts above)
  std::uint64_t phdr = 0;  // the program headers in memory
};

// Maps one PT_LOAD segment of `file` at `bias`.
bool map_segment(const File& file, const Elf64_Phdr& p, std::uint64_t bias, LoadFailure& failure) {
  Region& region = sandbox().region;
  const int prot = prot_of(p.p_flags);
  const std::uint64_t start = bias + p.p_vaddr;
  const std::uint64_t file_end = start + p.p_filesz;
  const std::uint64_t mem_end = start + p.p_memsz;
  if (p.p_vaddr % kPage != p.p_offset % kPage) return fail(failure, ENOEXEC, "a segment misaligned with its file offset");
  // The end of the file's part is zeroed to the page's end: writable meanwhile.
  const bool zero_tail = p.p_memsz > p.p_filesz && file_end % kPage != 0;
  if (p.p_filesz > 0) {
    const long ret = region.map(page_down(start), page_up(file_end) - page_down(start), zero_tail ? prot | PROT_WRITE : prot,
                                MAP_PRIVATE | MAP_FIXED, file.fd(), page_down(p.p_offset));
    if (sys::failed(ret)) return fail(failure, static_cast<int>(-ret), "mmap of a segment failed");
  }
  if (zero_tail) {
    static const std::byte zeros[kPage] = {};
    if (!write_program(file_end, zeros, page_up(file_end) - file_end)) {
      return fail(failure, EFAULT, "zeroing a segment's end failed");
    }
    if ((prot & PROT_WRITE) == 0) {
      sys::call(SYS_mprotect, static_cast<long>(page_down(file_end)), static_cast<long>(kPage), prot);
    }
  }
  const std::uint64_t anon_start = p.p_filesz > 0 ? page_up(file_end) : page_down(start);
  if (page_up(mem_end) > anon_start) {
    const long ret = region.map(anon_start, page_up(mem_end) - anon_start, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (sys::failed(ret)) return fail(failure, static_cast<int>(-ret), "mmap of a segment's zero pages failed");
  }
  return true;
}

// Maps an ELF image. The main program of type ET_DYN goes at `dyn_base`; an
// interpreter (interp = true) where mmap(NULL) would put it.
bool map_elf(const File& file, const Elf& elf, bool interp, std::uint64_t dyn_base, Mapped& out, LoadFailure& failure) {
  Region& region = sandbox().region;
  std::uint64_t lo = ~std::uint64_t{0}, hi = 0;
  for (const Elf64_Phdr& p : elf.segments) {
    if (p.p_type != PT_LOAD || p.p_memsz == 0) continue;
    if (p.p_vaddr + p.p_memsz < p.p_vaddr || p.p_filesz > p.p_memsz) return fail(failure, ENOEXEC, "a bad segment");
    lo = std::min(lo, page_down(p.p_vaddr));
    hi = std::max(hi, page_up(p.p_vaddr + p.p_memsz));
  }
  if (hi <= lo) return fail(failure, ENOEXEC, "no loadable segment");
  std::uint64_t bias = 0;
  if (elf.header.e_type == ET_DYN) {
    std::uint64_t at = dyn_base;
    if (interp || !region.contains(at, hi - lo) || !region.none_mapped(at, at + (hi - lo))) {
      auto free = region.find_free(hi - lo, region.mmap_top());
      if (!free) return fail(failure, ENOMEM, "no room in the untrusted region for the image");
      at = *free;
    }
    bias = at - lo;
  } else if (!region.contains(lo, hi - lo)) {
    return fail(failure, ENOMEM, "the program is linked at addresses outside the untrusted region");
  } else if (!region.none_mapped(lo, hi)) {
    return fail(failure, ENOMEM, "the program's addresses overlap its interpreter or stack");
  }
  // The whole span first (holes between segments stay inaccessible), then
  // each segment over it.
  const long span = region.map(bias + lo, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sys::failed(span)) return fail(failure, static_cast<int>(-span), "mmap of the image's span failed");
  out.bias = bias;
  out.end = 0;
  for (const Elf64_Phdr& p : elf.segments) {
    if (p.p_type != PT_LOAD || p.p_memsz == 0) continue;
    if (!map_segment(file, p, bias, failure)) return false;
    out.end = std::max(out.end, bias + p.p_vaddr + p.p_memsz);
  }
  out.phdr = 0;
  for (const Elf64_Phdr& p : elf.segments) {
    if (p.p_type == PT_PHDR) out.phdr = bias + p.p_vaddr;
  }
  for (const Elf64_Phdr& p : elf.segments) {
    if (out.phdr == 0 && p.p_type == PT_LOAD && elf.header.e_phoff >= p.p_offset &&
        elf.header.e_phoff - p.p_offset < p.p_filesz) {
      out.phdr = bias + p.p_vaddr + (elf.header.e_phoff - p.p_offset);
    }
  }
  return true;
}

// A #! line: the interpreter and its one optional argument.
bool parse_script(const char* line, std::size_t n, std::string& interp, std::string& arg) {
  std::string text(line + 2, n - 2);
  const std::size_t newline = text.find('\n');
  if (newline != std::string::npos) text.resize(newline);
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  std::size_t i = 0;
  while (i < text.size() && blank(text[i])) ++i;
  std::size_t j = i;
  while (j < text.size() && !blank(text[j])) ++j;
  interp = text.substr(i, j - i);
  while (j < text.size() && blank(text[j])) ++j;
  std::size_t end = text.size();
  while (end > j && blank(text[end - 1])) --end;
  arg = text.substr(j, end - j);
  return !interp.empty();
}

struct StackLayout {
  std::uint64_t top = 0;
  std::uint64_t size = 0;
};

std::uint64_t stack_size() noexcept {
  rlimit limit{};
  if (sys::call(SYS_getrlimit, RLIMIT_STACK, reinterpret_cast<long>(&limit)) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return 8 * kMiB;
  }
  return std::clamp<std::uint64_t>(page_up(limit.rlim_cur), 128 * 1024, 1024 * kMiB);
}

// The initial stack (what the kernel's create_elf_tables writes): argc, argv,
// envp, the auxiliary vector, then the strings and AT_RANDOM's bytes above.
bool build_stack(const StackLayout& stack, const std::vector<std::string>& argv, const std::vector<std::string>& envp,
                 const std::string& execfn, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& aux_in,
                 std::uint64_t& sp_out, LoadFailure& failure) {
  std::uint64_t sp = stack.top - 8;  // a NULL word at the very top
  std::vector<std::pair<std::uint64_t, std::string_view>> strings;
  auto place = [&](std::string_view s) {
    sp -= s.size() + 1;
    strings.emplace_back(sp, s);
    return sp;
  };
  const std::uint64_t execfn_at = place(execfn);
  std::vector<std::uint64_t> env_at, arg_at;
  for (auto it = envp.rbegin(); it != envp.rend(); ++it) env_at.insert(env_at.begin(), place(*it));
  for (auto it = argv.rbegin(); it != argv.rend(); ++it) arg_at.insert(arg_at.begin(), place(*it));
  const std::uint64_t platform_at = place("x86_64");
  sp &= ~std::uint64_t{15};
  sp -= 16;
  const std::uint64_t random_at = sp;
  std::uint8_t random_bytes[16];
  if (sys::call(SYS_getrandom, reinterpret_cast<long>(random_bytes), sizeof random_bytes, 0) != sizeof random_bytes) {
    return fail(failure, EIO, "getrandom for AT_RANDOM failed");
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> aux = aux_in;
  aux.emplace_back(AT_RANDOM, random_at);
  aux.emplace_back(AT_EXECFN, execfn_at);
  aux.emplace_back(AT_PLATFORM, platform_at);
  aux.emplace_back(AT_NULL, 0);
  std::vector<std::uint64_t> words;
  words.push_back(argv.size());
  for (std::uint64_t a : arg_at) words.push_back(a);
  words.push_back(0);
  for (std::uint64_t e : env_at) words.push_back(e);
  words.push_back(0);
  for (auto [type, value] : aux) {
    words.push_back(type);
    words.push_back(value);
  }
  sp -= words.size() * 8;
  sp &= ~std::uint64_t{15};  // RSP 16-byte aligned at the entry point, argc on top
  if (sp < stack.top - stack.size + kPage) return fail(failure, E2BIG, "arguments and environment too large for the stack");
  bool ok = write_program(sp, words.data(), words.size() * 8) && write_program(random_at, random_bytes, sizeof random_bytes);
  for (auto [at, s] : strings) {
    ok = ok && write_program(at, s.data(), s.size());
    ok = ok && write_program(at + s.size(), "", 1);
  }
  if (!ok) return fail(failure, EFAULT, "writing the initial stack failed");
  sp_out = sp;
  return true;
}

bool load_elf(const std::string& path, const std::string& execfn, const std::vector<std::string>& argv,
              const std::vector<std::string>& envp, File& file, LoadedProgram& out, LoadFailure& failure) {
  Sandbox& s = sandbox();
  Region& region = s.region;
  Elf elf;
  if (!read_elf(file, path, elf, failure)) return false;

  // The layout, as Linux's with a randomized base for each part: the stack
  // near the region's top, mmap's area below it, a PIE at two thirds.
  StackLayout stack;
  stack.size = stack_size();
  stack.top = region.end() - kStackGapAbove - random_pages(256 * kMiB);
  const std::uint64_t stack_bottom = stack.top - stack.size;
  region.set_mmap_top(stack_bottom - std::max(stack.size, kMinMmapGap) - random_pages(16 * kMiB));
  const std::uint64_t pie_base =
      page_down(region.start() + (region.end() - region.start()) / 3 * 2) + random_pages(32 * kMiB);

  Mapped program;
  if (!map_elf(file, elf, /*interp=*/false, pie_base, program, failure)) return false;
  Mapped interpreter;
  std::uint64_t entry = program.bias + elf.header.e_entry;
  if (!elf.interpreter.empty()) {
    File interp_file;
    if (int err = interp_file.open(elf.interpreter); err != 0) {
      return fail(failure, err == ENOENT ? ENOENT : err, elf.interpreter + " (the program's interpreter)");
    }
    Elf interp_elf;
    if (!read_elf(interp_file, elf.interpreter, interp_elf, failure)) return false;
    if (!interp_elf.interpreter.empty()) return fail(failure, ELIBBAD, elf.interpreter + ": an interpreter with an interpreter");
    if (!map_elf(interp_file, interp_elf, /*interp=*/true, 0, interpreter, failure)) return false;
    entry = interpreter.bias + interp_elf.header.e_entry;
  }
  const int stack_prot = PROT_READ | PROT_WRITE | (elf.executable_stack ? PROT_EXEC : 0);
  const long st = region.map(stack_bottom, stack.size, stack_prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (sys::failed(st)) return fail(failure, static_cast<int>(-st), "mmap of the stack failed");

  s.brk_start = s.brk = page_up(program.end) + random_pages(32 * kMiB);

  std::vector<std::pair<std::uint64_t, std::uint64_t>> aux;
  if (s.vdso != 0) aux.emplace_back(AT_SYSINFO_EHDR, s.vdso);
  if (const unsigned long minsig = getauxval(AT_MINSIGSTKSZ); minsig != 0) aux.emplace_back(AT_MINSIGSTKSZ, minsig);
  aux.emplace_back(AT_HWCAP, getauxval(AT_HWCAP));
  aux.emplace_back(AT_PAGESZ, kPage);
  aux.emplace_back(AT_CLKTCK, getauxval(AT_CLKTCK));
  aux.emplace_back(AT_PHDR, program.phdr);
  aux.emplace_back(AT_PHENT, sizeof(Elf64_Phdr));
  aux.emplace_back(AT_PHNUM, elf.header.e_phnum);
  aux.emplace_back(AT_BASE, elf.interpreter.empty() ? 0 : interpreter.bias);
  aux.emplace_back(AT_FLAGS, 0);
  aux.emplace_back(AT_ENTRY, program.bias + elf.header.e_entry);
  aux.emplace_back(AT_UID, static_cast<std::uint64_t>(sys::call(SYS_getuid)));
  aux.emplace_back(AT_EUID, static_cast<std::uint64_t>(sys::call(SYS_geteuid)));
  aux.emplace_back(AT_GID, static_cast<std::uint64_t>(sys::call(SYS_getgid)));
  aux.emplace_back(AT_EGID, static_cast<std::uint64_t>(sys::call(SYS_getegid)));
  aux.emplace_back(AT_SECURE, 0);
  aux.emplace_back(AT_HWCAP2, getauxval(AT_HWCAP2));
  if (!build_stack(stack, argv, envp, execfn, aux, out.stack_pointer, failure)) return false;
  out.entry = entry;
  out.executable_stack = elf.executable_stack;
  return true;
}

}  // namespace

long open_executable(const std::string& path, int program_fd) noexcept {
  // The program's own descriptor (execveat's AT_EMPTY_PATH) by its /proc
  // link; a path through the file-system view, if there is one.
  std::string link;
  long fd;
  if (program_fd >= 0) {
    link = "/proc/thread-self/fd/" + std::to_string(program_fd);
    fd = open_path_for_exec(link.c_str());
  } else {
    fd = open_for_exec(path);
  }
  if (sys::failed(fd)) return fd;
  struct stat st {};
  long access = sys::call(SYS_fstat, fd, reinterpret_cast<long>(&st));
  if (access == 0 && !S_ISREG(st.st_mode)) access = -EACCES;
  if (access == 0) {
    // The check on what was opened (what the view resolved), or, where
    // AT_EMPTY_PATH is older than the kernel, on the path.
    access = sys::call(SYS_faccessat2, fd, reinterpret_cast<long>(""), X_OK, AT_EACCESS | AT_EMPTY_PATH);
    const std::string& name = program_fd >= 0 ? link : path;
    if (access == -ENOSYS || (access == -EINVAL && view() == nullptr)) {
      access = sys::call(SYS_access, reinterpret_cast<long>(name.c_str()), X_OK);
    }
  }
  if (access != 0) {
    sys::call(SYS_close, fd);
    return -EACCES;
  }
  return fd;
}

bool load_program(const std::string& path, const std::vector<std::string>& argv_in,
                  const std::vector<std::string>& envp, LoadedProgram& out, LoadFailure& failure,
                  int program_fd) noexcept {
  std::string current = path;
  std::vector<std::string> argv = argv_in;
  for (int depth = 0; depth <= kMaxScriptDepth; ++depth) {
    File file;
    if (int err = file.open(current, depth == 0 ? program_fd : -1); err != 0) return fail(failure, err, current);
    char line[kMaxScriptLine];
    const long n = file.read_some(line, sizeof line);
    if (n >= 2 && line[0] == '#' && line[1] == '!') {
      std::string interp, arg;
      if (!parse_script(line, static_cast<std::size_t>(n), interp, arg)) return fail(failure, ENOEXEC, current + ": an empty #! line");
      // argv[0] becomes the interpreter, then its argument, then the script
      // as it was named (the kernel's load_script).
      std::vector<std::string> next{interp};
      if (!arg.empty()) next.push_back(arg);
      next.push_back(current);
      if (!argv.empty()) next.insert(next.end(), argv.begin() + 1, argv.end());
      argv = std::move(next);
      current = interp;
      continue;
    }
    LockGuard hold(sandbox().region.lock());
    return load_elf(current, path, argv, envp, file, out, failure);
  }
  return fail(failure, ELOOP, path + ": #! interpreters nested too deep");
}

}  // namespace dunk::sandbox
