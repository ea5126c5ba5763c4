#include "sandbox/text_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace dunk::sandbox {

bool read_text(const std::string& path, std::string& text) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  text.clear();
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<std::size_t>(n));
  const int err = errno;
  close(fd);
  errno = err;
  return n == 0;
}

int write_text(const std::string& path, const std::string& text) noexcept {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const ssize_t n = write(fd, text.data(), text.size());
  const int err = n == static_cast<ssize_t>(text.size()) ? 0 : n < 0 ? errno : EIO;
  close(fd);
  return err;
}

}  // namespace dunk::sandbox
