// layouts.h against the system's headers: every size and offset the walker
// reads a structure at.
#include <asm/termbits.h>
#include <linux/aio_abi.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/landlock.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/perf_event.h>
#include <linux/rseq.h>
#include <linux/sched.h>
#include <linux/stat.h>
#include <linux/time_types.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstddef>

#include <gtest/gtest.h>

#include "abi/layouts.h"

namespace dunk::abi::layout {
namespace {

// The kernel's structures that glibc's headers would clash with, as the
// uapi headers define them (one-line copies of their layout, for offsetof).
struct KernelIovec {
  void* base;
  unsigned long len;
};
struct KernelMsghdr {
  void* name;
  int namelen;
  KernelIovec* iov;
  unsigned long iovlen;
  void* control;
  unsigned long controllen;
  unsigned flags;
};
struct KernelCmsghdr {
  unsigned long len;
  int level;
  int type;
};
struct KernelMmsghdr {
  KernelMsghdr hdr;
  unsigned len;
};
struct KernelPollfd {
  int fd;
  short events;
  short revents;
};
struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  unsigned long mask;
};
struct KernelStack {
  void* sp;
  int flags;
  unsigned long size;
};
struct __attribute__((packed)) KernelEpollEvent {
  unsigned events;
  unsigned long long data;
};

TEST(AbiLayouts, SocketsAndVectors) {
  EXPECT_EQ(sizeof(KernelIovec), kIovecSize);
  EXPECT_EQ(offsetof(KernelIovec, len), kIovecLen);
  EXPECT_EQ(sizeof(KernelMsghdr), kMsghdrSize);
  EXPECT_EQ(offsetof(KernelMsghdr, namelen), kMsghdrNamelen);
  EXPECT_EQ(offsetof(KernelMsghdr, iov), kMsghdrIov);
  EXPECT_EQ(offsetof(KernelMsghdr, iovlen), kMsghdrIovlen);
  EXPECT_EQ(offsetof(KernelMsghdr, control), kMsghdrControl);
  EXPECT_EQ(offsetof(KernelMsghdr, controllen), kMsghdrControllen);
  EXPECT_EQ(offsetof(KernelMsghdr, flags), kMsghdrFlags);
  EXPECT_EQ(sizeof(KernelMmsghdr), kMmsghdrSize);
  EXPECT_EQ(offsetof(KernelMmsghdr, len), kMmsghdrLen);
  EXPECT_EQ(sizeof(KernelCmsghdr), kCmsghdrSize);
  EXPECT_EQ(offsetof(KernelCmsghdr, level), kCmsgLevel);
  EXPECT_EQ(offsetof(KernelCmsghdr, type), kCmsgType);
  EXPECT_EQ(sizeof(KernelPollfd), kPollfdSize);
  EXPECT_EQ(offsetof(KernelPollfd, revents), kPollfdRevents);
  EXPECT_EQ(sizeof(KernelEpollEvent), kEpollEventSize);
}

TEST(AbiLayouts, SignalsAndThreads) {
  EXPECT_EQ(sizeof(KernelSigaction), kSigactionSize);
  EXPECT_EQ(offsetof(KernelSigaction, flags), kSigactionFlags);
  EXPECT_EQ(offsetof(KernelSigaction, restorer), kSigactionRestorer);
  EXPECT_EQ(offsetof(KernelSigaction, mask), kSigactionMask);
  EXPECT_EQ(sizeof(KernelStack), kStackSize);
  EXPECT_EQ(offsetof(KernelStack, flags), kStackFlags);
  EXPECT_EQ(offsetof(KernelStack, size), kStackLength);
  EXPECT_EQ(sizeof(clone_args), kCloneArgsSizeVer2);
  EXPECT_EQ(CLONE_ARGS_SIZE_VER0, kCloneArgsSizeVer0);
  EXPECT_EQ(CLONE_ARGS_SIZE_VER1, kCloneArgsSizeVer1);
  EXPECT_EQ(offsetof(clone_args, pidfd), kCloneArgsPidfd);
  EXPECT_EQ(offsetof(clone_args, child_tid), kCloneArgsChildTid);
  EXPECT_EQ(offsetof(clone_args, parent_tid), kCloneArgsParentTid);
  EXPECT_EQ(offsetof(clone_args, exit_signal), kCloneArgsExitSignal);
  EXPECT_EQ(offsetof(clone_args, stack), kCloneArgsStack);
  EXPECT_EQ(offsetof(clone_args, stack_size), kCloneArgsStackSize);
  EXPECT_EQ(offsetof(clone_args, tls), kCloneArgsTls);
  EXPECT_EQ(offsetof(clone_args, set_tid), kCloneArgsSetTid);
  EXPECT_EQ(offsetof(clone_args, set_tid_size), kCloneArgsSetTidSize);
  EXPECT_EQ(offsetof(clone_args, cgroup), kCloneArgsCgroup);
  EXPECT_EQ(CLONE_VM, kCloneVm);
  EXPECT_EQ(CLONE_PIDFD, kClonePidfd);
  EXPECT_EQ(CLONE_SETTLS, kCloneSettls);
  EXPECT_EQ(CLONE_PARENT_SETTID, kCloneParentSettid);
  EXPECT_EQ(CLONE_CHILD_CLEARTID, kCloneChildCleartid);
  EXPECT_EQ(CLONE_CHILD_SETTID, kCloneChildSettid);
  EXPECT_EQ(CLONE_INTO_CGROUP, kCloneIntoCgroup);
  EXPECT_EQ(sizeof(robust_list_head), kRobustListHeadSize);
  EXPECT_EQ(sizeof(rseq), kRseqMinSize);
  EXPECT_EQ(RSEQ_FLAG_UNREGISTER, static_cast<int>(kRseqFlagUnregister));
  EXPECT_EQ(sizeof(futex_waitv), kFutexWaitvSize);
  EXPECT_EQ(offsetof(futex_waitv, uaddr), kFutexWaitvUaddr);
  EXPECT_EQ(offsetof(futex_waitv, flags), kFutexWaitvFlags);
}

TEST(AbiLayouts, AsynchronousIo) {
  EXPECT_EQ(sizeof(iocb), kIocbSize);
  EXPECT_EQ(offsetof(iocb, aio_key), kIocbKey);
  EXPECT_EQ(offsetof(iocb, aio_lio_opcode), kIocbOpcode);
  EXPECT_EQ(offsetof(iocb, aio_fildes), kIocbFildes);
  EXPECT_EQ(offsetof(iocb, aio_buf), kIocbBuf);
  EXPECT_EQ(offsetof(iocb, aio_nbytes), kIocbNbytes);
  EXPECT_EQ(offsetof(iocb, aio_flags), kIocbFlags);
  EXPECT_EQ(offsetof(iocb, aio_resfd), kIocbResfd);
  EXPECT_EQ(IOCB_FLAG_RESFD, kIocbFlagResfd);
  EXPECT_EQ(IOCB_CMD_PREAD, kIocbCmdPread);
  EXPECT_EQ(IOCB_CMD_PWRITE, kIocbCmdPwrite);
  EXPECT_EQ(IOCB_CMD_FSYNC, kIocbCmdFsync);
  EXPECT_EQ(IOCB_CMD_FDSYNC, kIocbCmdFdsync);
  EXPECT_EQ(IOCB_CMD_POLL, kIocbCmdPoll);
  EXPECT_EQ(IOCB_CMD_NOOP, kIocbCmdNoop);
  EXPECT_EQ(IOCB_CMD_PREADV, kIocbCmdPreadv);
  EXPECT_EQ(IOCB_CMD_PWRITEV, kIocbCmdPwritev);
  EXPECT_EQ(sizeof(io_event), kIoEventSize);
  EXPECT_EQ(sizeof(io_uring_params), kIoUringParamsSize);
  EXPECT_EQ(sizeof(io_uring_files_update), kIoUringFilesUpdateSize);
  EXPECT_EQ(offsetof(io_uring_files_update, fds), kIoUringFilesUpdateFds);
  EXPECT_EQ(sizeof(io_uring_probe), kIoUringProbeSize);
  EXPECT_EQ(sizeof(io_uring_probe_op), kIoUringProbeOpSize);
  EXPECT_EQ(sizeof(io_uring_rsrc_register), kIoUringRsrcRegisterSize);
  EXPECT_EQ(sizeof(io_uring_rsrc_update2), kIoUringRsrcUpdate2Size);
}

TEST(AbiLayouts, FixedStructures) {
  // glibc's x86-64 struct stat is the kernel's (asm/stat.h, which cannot be
  // included beside it).
  EXPECT_EQ(sizeof(struct stat), kStatSize);
  EXPECT_EQ(sizeof(struct statx), kStatxSize);
  EXPECT_EQ(sizeof(__kernel_timespec), kTimespecSize);
  EXPECT_EQ(sizeof(struct __kernel_itimerspec), kItimerspecSize);
  EXPECT_EQ(sizeof(__kernel_old_timeval), kTimevalSize);
  EXPECT_EQ(sizeof(struct termios), kTermiosSize);
  EXPECT_EQ(sizeof(struct termios2), kTermios2Size);
  EXPECT_EQ(sizeof(open_how), kOpenHowSize);
  EXPECT_EQ(sizeof(mount_attr), kMountAttrSize);
  EXPECT_EQ(offsetof(mount_attr, userns_fd), kMountAttrUsernsFd);
  EXPECT_EQ(MOUNT_ATTR_IDMAP, kMountAttrIdmap);
  EXPECT_EQ(sizeof(landlock_path_beneath_attr), kLandlockPathBeneathSize);
  EXPECT_EQ(offsetof(landlock_path_beneath_attr, parent_fd), kLandlockPathBeneathFd);
  EXPECT_EQ(sizeof(landlock_ruleset_attr), kLandlockRulesetAttrSize);
  EXPECT_EQ(sizeof(sock_fprog), kSockFprogSize);
  EXPECT_EQ(offsetof(sock_fprog, filter), kSockFprogFilter);
  EXPECT_EQ(sizeof(sock_filter), kSockFilterSize);
  EXPECT_EQ(PERF_ATTR_SIZE_VER0, kPerfAttrSizeVer0);
  EXPECT_EQ(offsetof(perf_event_attr, size), kPerfAttrSizeField);
  EXPECT_EQ(sizeof(__user_cap_header_struct), kCapHeaderSize);
  EXPECT_EQ(sizeof(__user_cap_data_struct), kCapDataSize);
  EXPECT_EQ(static_cast<std::uint32_t>(_LINUX_CAPABILITY_VERSION_1), kCapVersion1);
  EXPECT_EQ(MAX_HANDLE_SZ, static_cast<int>(kMaxHandleSize));
}

}  // namespace
}  // namespace dunk::abi::layout
