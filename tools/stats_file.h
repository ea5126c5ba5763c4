// The shared statistics block of `dunk exec --stats`: a file every process
// of the program's tree maps (DUNK_STATS=<path>, read by the monitor when a
// process enters VM mode) and adds its counts to.
#pragma once

#include <string>

#include "base/unique_fd.h"
#include "core/stats.h"
#include "dunk/result.h"

namespace dunk::cli {

class StatsFile {
 public:
  // Creates an initialised block in $TMPDIR (or /tmp). Not O_TMPFILE: the
  // program's processes open it by path, so it needs a name until the end.
  static Result<StatsFile> create();

  StatsFile(StatsFile&& other) noexcept;
  StatsFile& operator=(StatsFile&&) = delete;
  StatsFile(const StatsFile&) = delete;
  StatsFile& operator=(const StatsFile&) = delete;
  ~StatsFile();  // removes the file

  const std::string& path() const { return path_; }
  const core::Stats& stats() const { return *mapping_.as<const core::Stats>(); }

 private:
  StatsFile(std::string path, Mapping mapping) : path_(std::move(path)), mapping_(std::move(mapping)) {}
  std::string path_;  // empty once moved from
  Mapping mapping_;
};

}  // namespace dunk::cli
