// dune_elf_*: reading an ELF64 x86-64 file or image and loading its PT_LOAD
// segments, for supervisors that load programs themselves (Dune's sandbox).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "libdune/internal.h"

namespace {

// Limits on what a file may make us read (Dune's).
constexpr int kMaxProgramHeaders = 40;
constexpr int kMaxSectionHeaders = 100;
constexpr std::size_t kMaxSectionName = 40;
constexpr std::uint64_t kMaxStringTable = 1 << 20;

// Reads `len` bytes at `off` of the file or image; the count read.
long elf_read(struct dune_elf* elf, void* dst, std::size_t len, std::uint64_t off) {
  if (elf->mem == nullptr) return pread(elf->fd, dst, len, static_cast<off_t>(off));
  if (off >= static_cast<std::uint64_t>(elf->len)) return 0;
  const std::size_t n = std::min<std::size_t>(len, static_cast<std::size_t>(elf->len) - off);
  std::memcpy(dst, elf->mem + off, n);
  return static_cast<long>(n);
}

// Reads `count` entries of `size` bytes at `off` into a new buffer.
template <class T>
int read_table(struct dune_elf* elf, std::uint64_t off, int count, T** out) {
  const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(count);
  auto* table = static_cast<T*>(std::malloc(bytes == 0 ? 1 : bytes));
  if (table == nullptr) return -ENOMEM;
  if (elf_read(elf, table, bytes, off) != static_cast<long>(bytes)) {
    std::free(table);
    return -EIO;
  }
  *out = table;
  return 0;
}

int load_program_headers(struct dune_elf* elf) {
  if (elf->hdr.e_phentsize != sizeof(Elf64_Phdr) || elf->hdr.e_phnum > kMaxProgramHeaders) return -EINVAL;
  return read_table(elf, elf->hdr.e_phoff, elf->hdr.e_phnum, &elf->phdr);
}

int load_section_headers(struct dune_elf* elf) {
  const Elf64_Ehdr& h = elf->hdr;
  if (h.e_shentsize != sizeof(Elf64_Shdr) || h.e_shnum > kMaxSectionHeaders || h.e_shstrndx >= h.e_shnum) {
    return -EINVAL;
  }
  Elf64_Shdr* shdr = nullptr;
  if (int r = read_table(elf, h.e_shoff, h.e_shnum, &shdr); r != 0) return r;
  const Elf64_Shdr& strings = shdr[h.e_shstrndx];
  char* names = nullptr;
  int r = strings.sh_type != SHT_STRTAB || strings.sh_size > kMaxStringTable
              ? -EINVAL
              : read_table(elf, strings.sh_offset, static_cast<int>(strings.sh_size), &names);
  if (r != 0) {
    std::free(shdr);
    return r;
  }
  elf->shdr = shdr;
  elf->shdrstr = names;
  return 0;
}

int check_header(struct dune_elf* elf) {
  Elf64_Ehdr h;
  if (elf_read(elf, &h, sizeof h, 0) != static_cast<long>(sizeof h)) return -EIO;
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64 ||
      h.e_ident[EI_DATA] != ELFDATA2LSB || h.e_ident[EI_VERSION] != EV_CURRENT || h.e_version != EV_CURRENT ||
      h.e_machine != EM_X86_64) {
    return -EINVAL;
  }
  elf->hdr = h;
  elf->phdr = nullptr;
  elf->shdr = nullptr;
  elf->shdrstr = nullptr;
  return 0;
}

int prot_of(const Elf64_Phdr& p) {
  return ((p.p_flags & PF_R) ? PROT_READ : 0) | ((p.p_flags & PF_W) ? PROT_WRITE : 0) |
         ((p.p_flags & PF_X) ? PROT_EXEC : 0);
}

}  // namespace

extern "C" {

int dune_elf_open(struct dune_elf* elf, const char* path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  elf->fd = fd;
  elf->mem = nullptr;
  elf->len = 0;
  if (int r = check_header(elf); r != 0) {
    close(fd);
    return r;
  }
  return 0;
}

int dune_elf_open_mem(struct dune_elf* elf, void* mem, int len) {
  elf->fd = -1;
  elf->mem = static_cast<unsigned char*>(mem);
  elf->len = len;
  return check_header(elf);
}

int dune_elf_close(struct dune_elf* elf) {
  std::free(elf->phdr);
  std::free(elf->shdr);
  std::free(elf->shdrstr);
  elf->phdr = nullptr;
  elf->shdr = nullptr;
  elf->shdrstr = nullptr;
  if (elf->mem == nullptr && elf->fd >= 0) close(elf->fd);
  elf->fd = -1;
  return 0;
}

int dune_elf_iter_ph(struct dune_elf* elf, dune_elf_phcb cb) {
  if (elf->phdr == nullptr) {
    if (int r = load_program_headers(elf); r != 0) return r;
  }
  for (int i = 0; i < elf->hdr.e_phnum; ++i) {
    if (int r = cb(elf, &elf->phdr[i]); r != 0) return r;
  }
  return 0;
}

int dune_elf_iter_sh(struct dune_elf* elf, dune_elf_shcb cb) {
  if (elf->shdr == nullptr) {
    if (int r = load_section_headers(elf); r != 0) return r;
  }
  const std::uint64_t strings_size = elf->shdr[elf->hdr.e_shstrndx].sh_size;
  for (int i = 0; i < elf->hdr.e_shnum; ++i) {
    const std::uint64_t at = elf->shdr[i].sh_name;
    if (at >= strings_size) return -EINVAL;
    const char* name = elf->shdrstr + at;
    if (strnlen(name, std::min<std::uint64_t>(kMaxSectionName, strings_size - at)) >= kMaxSectionName) return -EINVAL;
    if (int r = cb(elf, name, i, &elf->shdr[i]); r != 0) return r;
  }
  return 0;
}

int dune_elf_dump(struct dune_elf* elf) {
  const Elf64_Ehdr& h = elf->hdr;
  dune_printf("ELF: type %u machine %u entry 0x%016lx\n", h.e_type, h.e_machine, static_cast<unsigned long>(h.e_entry));
  dune_printf("ELF: %u program headers at 0x%lx, %u sections at 0x%lx (names in %u)\n", h.e_phnum,
              static_cast<unsigned long>(h.e_phoff), h.e_shnum, static_cast<unsigned long>(h.e_shoff), h.e_shstrndx);
  return dune_elf_iter_sh(elf, [](struct dune_elf*, const char* name, int n, Elf64_Shdr* s) {
    dune_printf("  [%2d] %-20s type %2u addr 0x%016lx offset 0x%08lx size 0x%08lx\n", n, name, s->sh_type,
                static_cast<unsigned long>(s->sh_addr), static_cast<unsigned long>(s->sh_offset),
                static_cast<unsigned long>(s->sh_size));
    return 0;
  });
}

int dune_elf_load_ph(struct dune_elf* elf, Elf64_Phdr* phdr, off_t off) {
  if (phdr->p_type != PT_LOAD || phdr->p_filesz > phdr->p_memsz) return -EINVAL;
  if (elf->mem != nullptr) return -EINVAL;  // an image in memory has no file to map
  const int prot = prot_of(*phdr);
  const std::uint64_t start = phdr->p_vaddr + static_cast<std::uint64_t>(off);
  if (phdr->p_filesz > 0) {
    void* want = reinterpret_cast<void*>(PGADDR(start));
    void* got = mmap(want, phdr->p_filesz + PGOFF(start), prot, MAP_FIXED | MAP_PRIVATE, elf->fd,
                     static_cast<off_t>(PGADDR(phdr->p_offset)));
    if (got != want) return -ENOMEM;
  }
  if (phdr->p_memsz == phdr->p_filesz) return 0;
  // The bss: the rest of the file's last page is zeroed (writable for the
  // moment if it is not), and whole pages after it come from anonymous memory.
  const std::uint64_t bss = start + phdr->p_filesz;
  const std::uint64_t whole = (bss + PGSIZE - 1) & ~std::uint64_t{PGMASK};
  const std::uint64_t end = (start + phdr->p_memsz + PGSIZE - 1) & ~std::uint64_t{PGMASK};
  if (phdr->p_filesz > 0 && bss < whole) {
    void* page = reinterpret_cast<void*>(whole - PGSIZE);
    if (!(prot & PROT_WRITE) && mprotect(page, PGSIZE, prot | PROT_WRITE) != 0) return -ENOMEM;
    std::memset(reinterpret_cast<void*>(bss), 0, whole - bss);
    if (!(prot & PROT_WRITE) && mprotect(page, PGSIZE, prot) != 0) return -ENOMEM;
  }
  const std::uint64_t anon = phdr->p_filesz > 0 ? whole : (start & ~std::uint64_t{PGMASK});
  if (end > anon) {
    void* want = reinterpret_cast<void*>(anon);
    if (mmap(want, end - anon, prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != want) return -ENOMEM;
  }
  return 0;
}

}  // extern "C"
