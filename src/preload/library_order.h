// Where dunk's preload library goes in a program's initial library list.
//
// `dunk exec` puts libdunk-preload.so first in LD_PRELOAD, so the dynamic
// linker loads it right after the program (and the vDSO), before every
// library the program names itself. That is harmless for symbol lookup (the
// library defines no symbol), but a runtime that insists on coming first
// refuses to run: AddressSanitizer's shared runtime (GCC's libasan, clang's
// -shared-libasan libclang_rt.asan) looks at the first library of
// dl_iterate_phdr's list and exits with "ASan runtime does not come first in
// initial library list".
//
// So every process decides for itself, before any of its code runs (an IFUNC
// resolver in the preload library, src/preload/preload.cc): when the library
// the dynamic linker loaded right after dunk's is such a runtime — the one
// that would come first natively — the process executes itself again with
// that runtime's path put in front of LD_PRELOAD; in the new image, the
// runtime comes first and dunk's library second, and LD_PRELOAD is given
// back its value before anything reads it, so that the program and the
// programs it executes see what every other program under `dunk exec` sees.
//
// This file is the decision, on strings: pure, no allocation, no libc, so it
// can run in an IFUNC resolver and be unit-tested.
#pragma once

#include <cstddef>
#include <string_view>

namespace dunk::preload {

// The dynamic linker splits LD_PRELOAD at these characters (ld.so(8)).
inline constexpr std::string_view kPreloadSeparators = ": ";

// string_view's substr() may throw, which would pull libstdc++'s exception
// machinery into the library; these cannot.
constexpr std::string_view head(std::string_view s, std::size_t n) noexcept {
  return {s.data(), n < s.size() ? n : s.size()};
}
constexpr std::string_view tail(std::string_view s, std::size_t from) noexcept {
  return from < s.size() ? std::string_view(s.data() + from, s.size() - from) : std::string_view();
}

// The first entry of an LD_PRELOAD value (empty entries skipped, as the
// dynamic linker skips them), and the rest after its separator.
struct Split {
  std::string_view first;
  std::string_view rest;
};

constexpr Split split_first(std::string_view list) noexcept {
  std::size_t start = list.find_first_not_of(kPreloadSeparators);
  if (start == std::string_view::npos) return {};
  list.remove_prefix(start);
  std::size_t end = list.find_first_of(kPreloadSeparators);
  if (end == std::string_view::npos) return {list, {}};
  return {head(list, end), tail(list, end + 1)};
}

// Runtimes that exit unless they come first in the initial library list:
// AddressSanitizer's shared runtimes, recognised by file name as the
// runtime itself recognises them.
constexpr bool must_come_first(std::string_view library_path) noexcept {
  std::size_t slash = library_path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? library_path : tail(library_path, slash + 1);
  return name.starts_with("libasan.so") || name.starts_with("libclang_rt.asan-");
}

enum class Step {
  kNothing,
  // Execute the program again with LD_PRELOAD = value.
  kExecuteAgain,
  // This is the image executed again: set LD_PRELOAD back to value.
  kRestore,
};

struct Decision {
  Step step = Step::kNothing;
  // kExecuteAgain: the runtime's path (to put in front of LD_PRELOAD, with a
  // separator); kRestore: the value to give LD_PRELOAD back (a suffix of it).
  std::string_view value;
};

// `ld_preload`: this process's LD_PRELOAD value; `self`: the path under which
// the dynamic linker loaded dunk's library; `next`: the path of the library
// it loaded right after dunk's (empty if none), i.e. the first one the
// program would have natively.
constexpr Decision decide(std::string_view ld_preload, std::string_view self, std::string_view next) noexcept {
  if (self.empty()) return {};
  const Split preload = split_first(ld_preload);
  if (preload.first == self) {
    // As `dunk exec` starts every program. A runtime whose path LD_PRELOAD
    // cannot carry stays where it is (and refuses to run, as natively it
    // would with any library before it).
    if (!next.empty() && must_come_first(next) && next.find_first_of(kPreloadSeparators) == std::string_view::npos) {
      return {Step::kExecuteAgain, next};
    }
    return {};
  }
  // Executed again: "RUNTIME:" in front of what LD_PRELOAD was. Only that
  // exact shape is undone, so that a user's own ordering is left alone.
  if (must_come_first(preload.first) && ld_preload.starts_with(preload.first) &&
      ld_preload.size() > preload.first.size() && ld_preload[preload.first.size()] == ':' &&
      split_first(preload.rest).first == self && preload.rest.starts_with(self)) {
    return {Step::kRestore, preload.rest};
  }
  return {};
}

}  // namespace dunk::preload
