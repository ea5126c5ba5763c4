// The calls that change the address space, served inside the untrusted
// region (region.h): mmap(NULL) placed by the region's allocator, MAP_FIXED
// and every range only inside it, brk emulated there, and whatever the
// program unmaps goes back to the reservation. The supervisor's own host
// calls pass through the monitor, which mirrors them into the guest page
// tables with the U bit the region's range gives (Mirror::set_user_ranges).
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>

#include <algorithm>

#include "base/syscall.h"
#include "sandbox/supervisor.h"

namespace dunk::sandbox {
namespace {

void answer(ProgramThread& t, long value) noexcept { t.frame.rax = static_cast<std::uint64_t>(value); }

constexpr std::uint64_t k2GiB = std::uint64_t{1} << 31;
constexpr int kMapType = 0x0f;  // MAP_TYPE
constexpr std::uint64_t kShmLba = 4096;  // SHMLBA on x86-64

// A length as the kernel rounds it, or 0 when it overflows.
std::uint64_t page_length(std::uint64_t length) noexcept {
  const std::uint64_t up = page_up(length);
  return up < length ? 0 : up;
}

}  // namespace

void sys_mmap(ProgramThread& t, const abi::Call& call) noexcept {
  const std::uint64_t address = call.args[0], length = call.args[1], offset = call.args[5];
  const int prot = static_cast<int>(call.args[2]), flags = static_cast<int>(call.args[3]);
  const int fd = static_cast<int>(call.args[4]);
  if (length == 0 || offset % kPage != 0) return answer(t, -EINVAL);
  const std::uint64_t size = page_length(length);
  if (size == 0) return answer(t, -ENOMEM);
  const int type = flags & kMapType;
  if (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE) return answer(t, -EINVAL);
  if ((flags & MAP_ANONYMOUS) == 0 && is_dunk_fd(fd)) {
    return refuse(t, call, -EBADF, "a descriptor of dunk's own (a vCPU's page would reach ring 3)");
  }
  Region& region = sandbox().region;
  LockGuard hold(region.lock());
  std::uint64_t at = 0;
  if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) != 0) {
    if (address % kPage != 0) return answer(t, -EINVAL);
    if (!region.contains(address, size)) {
      return refuse(t, call, -ENOMEM, "MAP_FIXED outside the program's memory (the untrusted region)");
    }
    if ((flags & MAP_FIXED) == 0 && !region.none_mapped(address, address + size)) return answer(t, -EEXIST);
    at = address;
  } else if (address != 0 && region.contains(page_down(address), size) &&
             region.none_mapped(page_down(address), page_down(address) + size)) {
    at = page_down(address);  // the hint, when it is free
  } else {
    auto free = (flags & MAP_32BIT) != 0 ? region.find_free(size, k2GiB) : region.find_free(size, region.mmap_top());
    if (!free) return answer(t, -ENOMEM);
    at = *free;
  }
  answer(t, region.map(at, size, prot, flags & ~MAP_32BIT, fd, offset));
}

void sys_munmap(ProgramThread& t, const abi::Call& call) noexcept {
  const std::uint64_t address = call.args[0], length = call.args[1];
  const std::uint64_t size = page_length(length);
  if (address % kPage != 0 || length == 0 || size == 0) return answer(t, -EINVAL);
  Sandbox& s = sandbox();
  if (!s.region.contains(address, size)) {
    return refuse(t, call, -EINVAL, "munmap outside the program's memory (the untrusted region)");
  }
  LockGuard hold(s.region.lock());
  if (Status st = s.region.unmap(address, size); !st) return answer(t, -st.error().err);
  // System V segments in the range are gone with it.
  for (auto it = s.shm.lower_bound(address); it != s.shm.end() && it->first < address + size;) it = s.shm.erase(it);
  answer(t, 0);
}

void sys_mprotect(ProgramThread& t, const abi::Call& call) noexcept {
  const std::uint64_t address = call.args[0], length = call.args[1];
  if (address % kPage != 0) return answer(t, -EINVAL);
  const std::uint64_t size = page_length(length);
  if (length != 0 && size == 0) return answer(t, -ENOMEM);
  if (size == 0) return answer(t, 0);
  Region& region = sandbox().region;
  if (!region.contains(address, size)) {
    return refuse(t, call, -ENOMEM, "mprotect outside the program's memory (the untrusted region)");
  }
  LockGuard hold(region.lock());
  // Natively the whole range must be mapped; the reservation is not the
  // program's.
  if (!region.all_mapped(address, address + size)) return answer(t, -ENOMEM);
  answer(t, sys::call(static_cast<long>(abi::kernel_number(call.number)), static_cast<long>(address),
                      static_cast<long>(size), static_cast<long>(call.args[2]), static_cast<long>(call.args[3])));
}

void sys_mremap(ProgramThread& t, const abi::Call& call) noexcept {
  const std::uint64_t old_address = call.args[0];
  const std::uint64_t flags = call.args[3], new_address = call.args[4];
  if (old_address % kPage != 0 || (flags & ~std::uint64_t{MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP}) != 0 ||
      ((flags & MREMAP_FIXED) != 0 && (flags & MREMAP_MAYMOVE) == 0)) {
    return answer(t, -EINVAL);
  }
  const std::uint64_t old_size = page_length(call.args[1]), new_size = page_length(call.args[2]);
  if (new_size == 0) return answer(t, -EINVAL);
  if (old_size == 0) return refuse(t, call, -EINVAL, "mremap of a shared mapping's size 0 is not served");
  Region& region = sandbox().region;
  if (!region.contains(old_address, old_size) ||
      ((flags & MREMAP_FIXED) != 0 && !region.contains(new_address, new_size))) {
    return refuse(t, call, -EFAULT, "mremap outside the program's memory (the untrusted region)");
  }
  LockGuard hold(region.lock());
  if (!region.all_mapped(old_address, old_address + old_size)) return answer(t, -EFAULT);
  const bool keep_old = (flags & MREMAP_DONTUNMAP) != 0;
  // RLIMIT_AS (limits.h): what the program's mappings grow by.
  const std::uint64_t kept = keep_old ? 0 : old_size;
  if (new_size > kept && !region.may_grow(new_size - kept)) return answer(t, -ENOMEM);
  auto move_to = [&](std::uint64_t at) {
    const long ret = sys::call(SYS_mremap, static_cast<long>(old_address), static_cast<long>(old_size),
                               static_cast<long>(new_size), static_cast<long>(flags | MREMAP_MAYMOVE | MREMAP_FIXED),
                               static_cast<long>(at));
    if (sys::failed(ret)) {
      region.heal(at, at + new_size);
      return answer(t, ret);
    }
    region.note_mapped(at, at + new_size);
    // The old range is a hole now: back to the reservation.
    if (!keep_old) (void)region.unmap(old_address, old_size);
    answer(t, ret);
  };
  if ((flags & MREMAP_FIXED) != 0) {
    if (new_address % kPage != 0) return answer(t, -EINVAL);
    return move_to(new_address);
  }
  if (new_size <= old_size) {
    const long ret = sys::call(SYS_mremap, static_cast<long>(old_address), static_cast<long>(old_size),
                               static_cast<long>(new_size), 0);
    if (!sys::failed(ret) && new_size < old_size) (void)region.unmap(old_address + new_size, old_size - new_size);
    return answer(t, ret);
  }
  const std::uint64_t tail = old_address + old_size, grown_end = old_address + new_size;
  if (region.contains(tail, new_size - old_size) && region.none_mapped(tail, grown_end)) {
    // Grow in place: the reservation after it makes room first.
    sys::call(SYS_munmap, static_cast<long>(tail), static_cast<long>(new_size - old_size));
    const long ret = sys::call(SYS_mremap, static_cast<long>(old_address), static_cast<long>(old_size),
                               static_cast<long>(new_size), 0);
    if (!sys::failed(ret)) {
      region.note_mapped(old_address, grown_end);
      return answer(t, ret);
    }
    region.heal(tail, grown_end);
    if ((flags & MREMAP_MAYMOVE) == 0) return answer(t, ret);
  }
  if ((flags & MREMAP_MAYMOVE) == 0) return answer(t, -ENOMEM);
  auto free = region.find_free(new_size, region.mmap_top());
  if (!free) return answer(t, -ENOMEM);
  move_to(*free);
}

void sys_brk(ProgramThread& t, const abi::Call& call) noexcept {
  Sandbox& s = sandbox();
  const std::uint64_t want = call.args[0];
  LockGuard hold(s.region.lock());
  if (want < s.brk_start) return answer(t, static_cast<long>(s.brk));
  const std::uint64_t old_top = page_up(s.brk), new_top = page_up(want);
  if (new_top > old_top) {
    if (!s.region.contains(old_top, new_top - old_top) || !s.region.none_mapped(old_top, new_top)) {
      return answer(t, static_cast<long>(s.brk));
    }
    const long ret = s.region.map(old_top, new_top - old_top, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (sys::failed(ret)) return answer(t, static_cast<long>(s.brk));
  } else if (new_top < old_top) {
    (void)s.region.unmap(new_top, old_top - new_top);
  }
  s.brk = want;
  answer(t, static_cast<long>(want));
}

void sys_shmat(ProgramThread& t, const abi::Call& call) noexcept {
  const int id = static_cast<int>(call.args[0]);
  std::uint64_t address = call.args[1];
  const int flags = static_cast<int>(call.args[2]);
  shmid_ds info{};
  if (long ret = sys::call(SYS_shmctl, id, IPC_STAT, reinterpret_cast<long>(&info)); ret != 0) return answer(t, ret);
  const std::uint64_t size = page_up(info.shm_segsz);
  Sandbox& s = sandbox();
  LockGuard hold(s.region.lock());
  if (address != 0) {
    if ((flags & SHM_RND) != 0) address &= ~(kShmLba - 1);
    if (address % kPage != 0) return answer(t, -EINVAL);
    if (!s.region.contains(address, size)) {
      return refuse(t, call, -EINVAL, "shmat outside the program's memory (the untrusted region)");
    }
    if ((flags & SHM_REMAP) == 0 && !s.region.none_mapped(address, address + size)) return answer(t, -EINVAL);
  } else {
    auto free = s.region.find_free(size, s.region.mmap_top());
    if (!free) return answer(t, -ENOMEM);
    address = *free;
  }
  if (!s.region.fits(address, address + size)) return answer(t, -ENOMEM);  // RLIMIT_AS (limits.h)
  // SHM_REMAP: the segment replaces the reservation (or the program's own
  // mapping the program asked to replace).
  const long ret = sys::call(SYS_shmat, id, static_cast<long>(address), flags | SHM_REMAP);
  if (sys::failed(ret)) {
    s.region.heal(address, address + size);
    return answer(t, ret);
  }
  s.region.note_mapped(address, address + size);
  s.shm[address] = size;
  answer(t, ret);
}

void sys_shmdt(ProgramThread& t, const abi::Call& call) noexcept {
  Sandbox& s = sandbox();
  LockGuard hold(s.region.lock());
  auto it = s.shm.find(call.args[0]);
  if (it == s.shm.end()) return answer(t, -EINVAL);
  const std::uint64_t address = it->first, size = it->second;
  const long ret = sys::call(SYS_shmdt, static_cast<long>(address));
  if (ret != 0) return answer(t, ret);
  s.shm.erase(it);
  (void)s.region.unmap(address, size);
  answer(t, 0);
}

}  // namespace dunk::sandbox
