// A private temporary directory for one benchmark run, removed with
// everything in it when the run ends (also when it throws). Shared by the
// benchmark programs.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace xpra_broker::bench {

class TempDir {
 public:
  // name: the directory's name prefix under $TMPDIR (or /tmp). mode: 0755 when
  // clients running as other uids must reach a socket inside.
  explicit TempDir(const std::string& name, mode_t mode = 0700) {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/" + name + ".XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    path_ = pattern;
    ::chmod(path_.c_str(), mode);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace xpra_broker::bench
