// Sizes and field offsets of the structures x86-64 Linux system calls pass
// through user memory, as the kernel lays them out (include/uapi/...; the
// kernel's own struct where glibc's differs: termios, sigaction, stat).
// The walker reads nested pointers and descriptors at these offsets; the
// unit test abi_layouts_test compares every one with the system headers.
#pragma once

#include <cstdint>

namespace dunk::abi::layout {

// Limits the kernel enforces before it touches memory.
inline constexpr std::uint32_t kPathMax = 4096;         // PATH_MAX, with the NUL
inline constexpr std::uint32_t kMaxArgStrlen = 131072;  // MAX_ARG_STRLEN (32 pages)
inline constexpr std::uint32_t kMaxArgStrings = 0x7fffffff;
inline constexpr std::uint32_t kUioMaxIov = 1024;       // UIO_MAXIOV
inline constexpr std::uint32_t kXattrNameMax = 256;     // XATTR_NAME_MAX + 1
inline constexpr std::uint32_t kNameMax = 256;          // NAME_MAX + 1
inline constexpr std::uint32_t kPageSize = 4096;
inline constexpr std::uint32_t kSockaddrMax = 128;      // sizeof(struct sockaddr_storage)
inline constexpr std::uint32_t kMaxHandleSize = 128;    // MAX_HANDLE_SZ
inline constexpr std::uint32_t kSigsetSize = 8;         // the kernel's sigset_t
inline constexpr std::uint32_t kTaskCommLen = 16;       // TASK_COMM_LEN

// struct iovec
inline constexpr std::uint32_t kIovecSize = 16;
inline constexpr std::uint32_t kIovecBase = 0;
inline constexpr std::uint32_t kIovecLen = 8;

// struct user_msghdr
inline constexpr std::uint32_t kMsghdrSize = 56;
inline constexpr std::uint32_t kMsghdrName = 0;
inline constexpr std::uint32_t kMsghdrNamelen = 8;  // int
inline constexpr std::uint32_t kMsghdrIov = 16;
inline constexpr std::uint32_t kMsghdrIovlen = 24;
inline constexpr std::uint32_t kMsghdrControl = 32;
inline constexpr std::uint32_t kMsghdrControllen = 40;
inline constexpr std::uint32_t kMsghdrFlags = 48;

// struct mmsghdr: a user_msghdr, then unsigned msg_len, padded to 8
inline constexpr std::uint32_t kMmsghdrSize = 64;
inline constexpr std::uint32_t kMmsghdrLen = 56;

// struct cmsghdr: size_t cmsg_len, int level, int type, data aligned to 8
inline constexpr std::uint32_t kCmsghdrSize = 16;
inline constexpr std::uint32_t kCmsgLevel = 8;
inline constexpr std::uint32_t kCmsgType = 12;
inline constexpr std::uint32_t kSolSocket = 1;
inline constexpr std::uint32_t kScmRights = 1;
constexpr std::uint64_t cmsg_align(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }

// struct pollfd
inline constexpr std::uint32_t kPollfdSize = 8;
inline constexpr std::uint32_t kPollfdRevents = 6;

// struct epoll_event: packed on x86-64
inline constexpr std::uint32_t kEpollEventSize = 12;

// The kernel's struct sigaction on x86-64: handler, flags, restorer, mask
inline constexpr std::uint32_t kSigactionSize = 32;
inline constexpr std::uint32_t kSigactionHandler = 0;
inline constexpr std::uint32_t kSigactionFlags = 8;
inline constexpr std::uint32_t kSigactionRestorer = 16;
inline constexpr std::uint32_t kSigactionMask = 24;

// stack_t
inline constexpr std::uint32_t kStackSize = 24;
inline constexpr std::uint32_t kStackSp = 0;
inline constexpr std::uint32_t kStackFlags = 8;
inline constexpr std::uint32_t kStackLength = 16;
inline constexpr std::uint32_t kSsDisable = 2;

// struct clone_args: 64 bytes in version 0, 80 with set_tid, 88 with cgroup
inline constexpr std::uint32_t kCloneArgsSizeVer0 = 64;
inline constexpr std::uint32_t kCloneArgsSizeVer1 = 80;
inline constexpr std::uint32_t kCloneArgsSizeVer2 = 88;
inline constexpr std::uint32_t kCloneArgsFlags = 0;
inline constexpr std::uint32_t kCloneArgsPidfd = 8;
inline constexpr std::uint32_t kCloneArgsChildTid = 16;
inline constexpr std::uint32_t kCloneArgsParentTid = 24;
inline constexpr std::uint32_t kCloneArgsExitSignal = 32;
inline constexpr std::uint32_t kCloneArgsStack = 40;
inline constexpr std::uint32_t kCloneArgsStackSize = 48;
inline constexpr std::uint32_t kCloneArgsTls = 56;
inline constexpr std::uint32_t kCloneArgsSetTid = 64;
inline constexpr std::uint32_t kCloneArgsSetTidSize = 72;
inline constexpr std::uint32_t kCloneArgsCgroup = 80;

// clone flags that make the kernel touch memory or descriptors
inline constexpr std::uint64_t kCloneVm = 0x100;
inline constexpr std::uint64_t kClonePidfd = 0x1000;
inline constexpr std::uint64_t kCloneSettls = 0x80000;
inline constexpr std::uint64_t kCloneParentSettid = 0x100000;
inline constexpr std::uint64_t kCloneChildCleartid = 0x200000;
inline constexpr std::uint64_t kCloneChildSettid = 0x1000000;
inline constexpr std::uint64_t kCloneIntoCgroup = 0x200000000ULL;

// struct iocb (linux/aio_abi.h, little-endian field order)
inline constexpr std::uint32_t kIocbSize = 64;
inline constexpr std::uint32_t kIocbKey = 8;         // u32, the kernel writes it
inline constexpr std::uint32_t kIocbOpcode = 16;     // u16
inline constexpr std::uint32_t kIocbFildes = 20;     // u32
inline constexpr std::uint32_t kIocbBuf = 24;
inline constexpr std::uint32_t kIocbNbytes = 32;
inline constexpr std::uint32_t kIocbFlags = 56;      // u32
inline constexpr std::uint32_t kIocbResfd = 60;      // u32
inline constexpr std::uint32_t kIocbFlagResfd = 1;
inline constexpr std::uint16_t kIocbCmdPread = 0;
inline constexpr std::uint16_t kIocbCmdPwrite = 1;
inline constexpr std::uint16_t kIocbCmdFsync = 2;
inline constexpr std::uint16_t kIocbCmdFdsync = 3;
inline constexpr std::uint16_t kIocbCmdPoll = 5;
inline constexpr std::uint16_t kIocbCmdNoop = 6;
inline constexpr std::uint16_t kIocbCmdPreadv = 7;
inline constexpr std::uint16_t kIocbCmdPwritev = 8;
inline constexpr std::uint32_t kIoEventSize = 32;

// struct sigevent
inline constexpr std::uint32_t kSigeventSize = 64;
inline constexpr std::uint32_t kSigeventValue = 0;
inline constexpr std::uint32_t kSigeventSigno = 8;
inline constexpr std::uint32_t kSigeventNotify = 12;
inline constexpr std::uint32_t kSigevThread = 2;     // mq_notify: netlink socket + cookie
inline constexpr std::uint32_t kNotifyCookieLen = 32;

// struct futex_waitv: u64 val, u64 uaddr, u32 flags, u32 reserved
inline constexpr std::uint32_t kFutexWaitvSize = 24;
inline constexpr std::uint32_t kFutexWaitvUaddr = 8;
inline constexpr std::uint32_t kFutexWaitvFlags = 16;

// struct sched_attr: u32 size first; version 0 is 48 bytes
inline constexpr std::uint32_t kSchedAttrSizeVer0 = 48;
inline constexpr std::uint32_t kSchedAttrSizeMax = 4096;  // larger sizes: E2BIG unless zero tail
// struct perf_event_attr: u32 type, u32 size
inline constexpr std::uint32_t kPerfAttrSizeField = 4;
inline constexpr std::uint32_t kPerfAttrSizeVer0 = 64;

// struct file_handle: u32 handle_bytes, int handle_type, bytes
inline constexpr std::uint32_t kFileHandleHeader = 8;

// capget/capset
inline constexpr std::uint32_t kCapHeaderSize = 8;
inline constexpr std::uint32_t kCapDataSize = 12;
inline constexpr std::uint32_t kCapVersion1 = 0x19980330;

// struct robust_list_head, struct rseq
inline constexpr std::uint32_t kRobustListHeadSize = 24;
inline constexpr std::uint32_t kRseqMinSize = 32;
inline constexpr std::uint32_t kRseqFlagUnregister = 1;

// struct msgbuf: long mtype, then text
inline constexpr std::uint32_t kMsgbufHeader = 8;

// struct sock_fprog: u16 len, padding, struct sock_filter *filter
inline constexpr std::uint32_t kSockFprogSize = 16;
inline constexpr std::uint32_t kSockFprogFilter = 8;
inline constexpr std::uint32_t kSockFilterSize = 8;

// struct mount_attr: u64 attr_set, attr_clr, propagation, userns_fd
inline constexpr std::uint32_t kMountAttrSize = 32;
inline constexpr std::uint32_t kMountAttrUsernsFd = 24;
inline constexpr std::uint64_t kMountAttrIdmap = 0x00100000;

// struct landlock_path_beneath_attr (packed): u64 allowed_access, s32 parent_fd
inline constexpr std::uint32_t kLandlockPathBeneathSize = 12;
inline constexpr std::uint32_t kLandlockPathBeneathFd = 8;

// struct file_clone_range: s64 src_fd, u64 offset, length, dest_offset
inline constexpr std::uint32_t kFileCloneRangeSize = 32;

// io_uring
inline constexpr std::uint32_t kIoUringParamsSize = 120;
inline constexpr std::uint32_t kIoUringFilesUpdateSize = 16;  // u32 offset, u32 resv, u64 fds
inline constexpr std::uint32_t kIoUringFilesUpdateFds = 8;
inline constexpr std::uint32_t kIoUringProbeSize = 16;
inline constexpr std::uint32_t kIoUringProbeOpSize = 8;
inline constexpr std::uint32_t kIoUringRsrcRegisterSize = 32;
inline constexpr std::uint32_t kIoUringRsrcUpdate2Size = 32;

// Fixed-size structures the kernel reads or writes whole.
inline constexpr std::uint32_t kStatSize = 144;          // struct stat (kernel's)
inline constexpr std::uint32_t kStatxSize = 256;
inline constexpr std::uint32_t kStatfsSize = 120;
inline constexpr std::uint32_t kUstatSize = 32;
inline constexpr std::uint32_t kTimespecSize = 16;       // struct __kernel_timespec
inline constexpr std::uint32_t kItimerspecSize = 32;
inline constexpr std::uint32_t kTimevalSize = 16;        // struct __kernel_old_timeval
inline constexpr std::uint32_t kItimervalSize = 32;
inline constexpr std::uint32_t kTimezoneSize = 8;
inline constexpr std::uint32_t kTimexSize = 208;
inline constexpr std::uint32_t kUtimbufSize = 16;
inline constexpr std::uint32_t kRlimitSize = 16;
inline constexpr std::uint32_t kRusageSize = 144;
inline constexpr std::uint32_t kSysinfoSize = 112;
inline constexpr std::uint32_t kTmsSize = 32;
inline constexpr std::uint32_t kUtsnameSize = 390;       // struct new_utsname
inline constexpr std::uint32_t kSiginfoSize = 128;
inline constexpr std::uint32_t kSchedParamSize = 4;
inline constexpr std::uint32_t kTermiosSize = 36;        // the kernel's struct termios
inline constexpr std::uint32_t kTermios2Size = 44;
inline constexpr std::uint32_t kWinsizeSize = 8;
inline constexpr std::uint32_t kFlockSize = 32;
inline constexpr std::uint32_t kFOwnerExSize = 8;
inline constexpr std::uint32_t kOpenHowSize = 24;
inline constexpr std::uint32_t kMqAttrSize = 64;
inline constexpr std::uint32_t kSembufSize = 6;
inline constexpr std::uint32_t kSemidDsSize = 104;       // struct semid64_ds
inline constexpr std::uint32_t kShmidDsSize = 112;       // struct shmid64_ds
inline constexpr std::uint32_t kMsqidDsSize = 120;       // struct msqid64_ds
inline constexpr std::uint32_t kSeminfoSize = 40;
inline constexpr std::uint32_t kShminfoSize = 72;        // struct shminfo64
inline constexpr std::uint32_t kShmInfoSize = 48;
inline constexpr std::uint32_t kMsginfoSize = 32;
inline constexpr std::uint32_t kIfreqSize = 40;
inline constexpr std::uint32_t kUserDescSize = 16;
inline constexpr std::uint32_t kUserRegsSize = 216;      // struct user_regs_struct
inline constexpr std::uint32_t kUserFpregsSize = 512;    // struct user_fpregs_struct
inline constexpr std::uint32_t kPeeksiginfoArgsSize = 16;
inline constexpr std::uint32_t kSeccompNotifSizesSize = 6;
inline constexpr std::uint32_t kLandlockRulesetAttrSize = 8;
inline constexpr std::uint32_t kAioSigsetSize = 16;      // struct __aio_sigset
inline constexpr std::uint32_t kGetcpuCacheSize = 128;
inline constexpr std::uint32_t kRseqCsSize = 32;

}  // namespace dunk::abi::layout
