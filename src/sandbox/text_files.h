// Small text files of the kernel's (/proc, cgroup v2, user-namespace
// maps), read and written whole by the sandbox's set-up and supervisor.
#pragma once

#include <string>

namespace dunk::sandbox {

// The whole of a small file into `text`; false with errno set.
bool read_text(const std::string& path, std::string& text);
// One write of all of `text` (such files take one value per write); 0 or
// the errno (EIO for a short write).
int write_text(const std::string& path, const std::string& text) noexcept;

}  // namespace dunk::sandbox
