#include "tools/stats_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <new>
#include <utility>

namespace dunk::cli {

Result<StatsFile> StatsFile::create() {
  const char* dir = std::getenv("TMPDIR");
  std::string path = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/dunk-stats-XXXXXX";
  UniqueFd fd(mkstemp(path.data()));
  if (!fd.valid()) return Error{"mkstemp failed", errno};
  // From here on the file has a name: a failure must remove it again.
  auto discard = [&path](Error error) {
    unlink(path.c_str());
    return error;
  };
  if (ftruncate(fd.get(), sizeof(core::Stats)) != 0) return discard(Error{"ftruncate failed", errno});
  Result<Mapping> mapped = Mapping::map(nullptr, sizeof(core::Stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (!mapped) return discard(mapped.error());
  auto* stats = new (mapped->data()) core::Stats();
  stats->magic = core::Stats::kMagic;
  stats->version = core::Stats::kVersion;
  stats->size = sizeof(core::Stats);
  return StatsFile(std::move(path), std::move(mapped).value());
}

StatsFile::StatsFile(StatsFile&& other) noexcept
    : path_(std::exchange(other.path_, {})), mapping_(std::move(other.mapping_)) {}

StatsFile::~StatsFile() {
  if (!path_.empty()) unlink(path_.c_str());
}

}  // namespace dunk::cli
