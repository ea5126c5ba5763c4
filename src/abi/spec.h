// The vocabulary the tables are written in (syscall_table.cc,
// commands.cc): one short constexpr function per kind of argument, so that
// a row reads like the kernel's prototype. Only the tables include this.
#pragma once

#include <initializer_list>

#include "abi/layouts.h"
#include "abi/syscalls.h"

namespace dunk::abi::spec {

constexpr Arg unused() noexcept { return Arg{}; }

// Numbers.
constexpr Arg value(const char* name, Type type, Format format = Format::kDec, Names names = Names::kNone) noexcept {
  Arg a;
  a.name = name;
  a.kind = Kind::kValue;
  a.type = type;
  a.format = format;
  a.names = names;
  return a;
}
constexpr Arg i32(const char* name) noexcept { return value(name, Type::kInt); }
constexpr Arg u32(const char* name) noexcept { return value(name, Type::kUInt); }
constexpr Arg i64(const char* name) noexcept { return value(name, Type::kLong); }
constexpr Arg u64(const char* name) noexcept { return value(name, Type::kULong); }
constexpr Arg hex32(const char* name) noexcept { return value(name, Type::kUInt, Format::kHex); }
constexpr Arg hex64(const char* name) noexcept { return value(name, Type::kULong, Format::kHex); }
constexpr Arg mode(const char* name) noexcept { return value(name, Type::kUInt, Format::kOct); }
// An address the kernel keeps as a value (a handler, a TLS base, a cookie).
constexpr Arg ptr(const char* name) noexcept { return value(name, Type::kULong, Format::kPtr); }
constexpr Arg flags(const char* name, Names names, Type type = Type::kUInt) noexcept {
  return value(name, type, names == Names::kNone ? Format::kHex : Format::kFlags, names);
}
// Flags without a name set: printed in hex.
constexpr Arg hexflags(const char* name) noexcept { return value(name, Type::kUInt, Format::kHex); }
constexpr Arg named(const char* name, Names names, Type type = Type::kInt) noexcept {
  return value(name, type, Format::kEnum, names);
}

// Descriptors, processes, signals.
constexpr Arg with_kind(const char* name, Kind kind, Type type = Type::kInt) noexcept {
  Arg a;
  a.name = name;
  a.kind = kind;
  a.type = type;
  return a;
}
constexpr Arg fd(const char* name) noexcept { return with_kind(name, Kind::kFd); }
constexpr Arg optional_fd(const char* name) noexcept {
  Arg a = fd(name);
  a.flags |= kOptionalFd;
  return a;
}
constexpr Arg dirfd(const char* name) noexcept { return with_kind(name, Kind::kDirFd); }
constexpr Arg fd_target(const char* name) noexcept { return with_kind(name, Kind::kFdTarget); }
constexpr Arg fd_first(const char* name) noexcept { return with_kind(name, Kind::kFdFirst, Type::kUInt); }
constexpr Arg fd_last(const char* name) noexcept { return with_kind(name, Kind::kFdLast, Type::kUInt); }
constexpr Arg pid(const char* name) noexcept { return with_kind(name, Kind::kPid); }
constexpr Arg sig(const char* name) noexcept { return with_kind(name, Kind::kSignal); }
constexpr Arg command(const char* name, Commands table, Type type = Type::kInt) noexcept {
  Arg a = with_kind(name, Kind::kCommand, type);
  a.commands = table;
  return a;
}

// Addresses the kernel uses without reading or writing them.
constexpr Arg addr(const char* name, Length length = Length::none()) noexcept {
  Arg a = with_kind(name, Kind::kAddress, Type::kULong);
  a.format = Format::kPtr;
  a.dir = Dir::kAddressOnly;
  a.length = length;
  return a;
}

// Memory the kernel reads and writes.
constexpr Arg memory(const char* name, Dir dir, Length length, Written written, Shape shape) noexcept {
  Arg a = with_kind(name, Kind::kMemory, Type::kULong);
  a.format = Format::kPtr;
  a.dir = dir;
  a.length = length;
  a.written = written;
  a.shape = shape;
  return a;
}
constexpr Arg in(const char* name, Length length, Shape shape = Shape::kBytes) noexcept {
  return memory(name, Dir::kRead, length, Written::kNever, shape);
}
constexpr Arg out(const char* name, Length length, Written written = Written::kOnSuccess,
                  Shape shape = Shape::kBytes) noexcept {
  return memory(name, Dir::kWrite, length, written, shape);
}
constexpr Arg inout(const char* name, Length length, Written written = Written::kOnSuccess,
                    Shape shape = Shape::kBytes) noexcept {
  return memory(name, Dir::kReadWrite, length, written, shape);
}
// A structure holding pointers: `dir` for the structure, `inner` for what
// it points to.
constexpr Arg nested(const char* name, Dir dir, Shape shape, Length length, Dir inner,
                     Written written = Written::kNever) noexcept {
  Arg a = memory(name, dir, length, written, shape);
  a.inner = inner;
  return a;
}
constexpr Arg str(const char* name, std::uint32_t max) noexcept {
  Arg a = with_kind(name, Kind::kString, Type::kULong);
  a.format = Format::kPtr;
  a.dir = Dir::kRead;
  a.length = Length::nul(max);
  return a;
}
constexpr Arg path(const char* name) noexcept {
  Arg a = str(name, layout::kPathMax);
  a.kind = Kind::kPath;
  return a;
}
constexpr Arg strings(const char* name) noexcept {
  Arg a = with_kind(name, Kind::kStrings, Type::kULong);
  a.format = Format::kPtr;
  a.dir = Dir::kRead;
  a.inner = Dir::kRead;
  a.shape = Shape::kStrings;
  a.length = Length::by_shape();
  return a;
}

// Modifiers.
constexpr Arg with_flags(Arg a, std::uint8_t flags) noexcept {
  a.flags |= flags;
  return a;
}
constexpr Arg async(Arg a) noexcept { return with_flags(a, kAsync); }
constexpr Arg typed(Arg a, Type type) noexcept {
  a.type = type;
  return a;
}
constexpr Arg formatted(Arg a, Format format, Names names = Names::kNone) noexcept {
  a.format = format;
  a.names = names;
  return a;
}

// A row of the call table.
constexpr CallSpec call(unsigned number, const char* name, std::initializer_list<Arg> args,
                        std::uint16_t flags = kCallNone, std::uint16_t classes = kClassNone,
                        const char* incomplete = nullptr) noexcept {
  CallSpec c;
  c.number = static_cast<std::uint16_t>(number);
  c.name = name;
  c.arg_count = static_cast<std::uint8_t>(args.size());
  unsigned i = 0;
  for (const Arg& a : args) c.args[i++] = a;
  c.flags = flags;
  c.classes = classes;
  c.incomplete = incomplete;
  return c;
}

}  // namespace dunk::abi::spec
