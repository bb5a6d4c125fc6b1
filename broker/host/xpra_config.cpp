#include "host/xpra_config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "unique_fd.h"

namespace xpra_broker {

namespace {

// Python's str.strip() for the ASCII whitespace a config file holds.
std::string strip(const std::string& s) {
  static const char* ws = " \t\r\n\v\f";
  const auto begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  if (s.empty()) out.emplace_back();
  return out;
}

}  // namespace

XpraConfValues parse_xpra_conf(const std::string& text) {
  // Kept lines: stripped, neither empty nor a comment.
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string raw; std::getline(in, raw);) {
    const std::string line = strip(raw);
    if (line.empty() || line[0] == '#' || line[0] == '!') continue;
    lines.push_back(line);
  }
  // A trailing backslash joins a line to the next kept one, with a space.
  std::vector<std::string> joined;
  std::string pending;
  for (const auto& line : lines) {
    if (line.back() == '\\') {
      pending += line.substr(0, line.size() - 1) + " ";
    } else {
      joined.push_back(pending + line);
      pending.clear();
    }
  }
  if (!pending.empty()) joined.push_back(pending);

  XpraConfValues values;
  for (const auto& line : joined) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    const std::string key = strip(line.substr(0, eq));
    std::string value = strip(line.substr(eq + 1));
    auto& current = values[key];
    // Xpra appends only to a value that is "truthy": a single empty string
    // is replaced, not extended.
    if (current.empty() || (current.size() == 1 && current[0].empty()))
      current = {std::move(value)};
    else
      current.push_back(std::move(value));
  }
  return values;
}

XpraSocketSettings merge_xpra_conf(const std::vector<XpraConfFile>& files) {
  XpraSocketSettings merged;
  for (const auto& file : files) {
    const XpraConfValues values = parse_xpra_conf(file.text);
    // dict.update(): a later file replaces the key as a whole.
    if (auto it = values.find("socket-dirs"); it != values.end()) merged.socket_dirs = {it->second, file.path};
    if (auto it = values.find("socket-dir"); it != values.end()) merged.socket_dir = {it->second, file.path};
  }
  if (merged.socket_dir.values.size() > 1) {
    merged.notes.push_back(merged.socket_dir.source +
                           ": socket-dir is set more than once in one file; Xpra ignores it (a string is required)");
    merged.socket_dir = {};
  }
  if (merged.socket_dirs.source.empty()) merged.socket_dirs.values = xpra_default_socket_dirs();
  return merged;
}

const std::vector<std::string>& xpra_default_socket_dirs() {
  static const std::vector<std::string> dirs = {"$XDG_RUNTIME_DIR/xpra", "/run/xpra", "~/.xpra"};
  return dirs;
}

bool xpra_dir_is_per_user(const std::string& dir) {
  return dir.empty() || dir[0] != '/' || dir.find('$') != std::string::npos;
}

std::string tidy_dir_path(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') return dir;
  std::string out;
  for (const auto& part : split(dir, '/')) {
    if (part.empty() || part == ".") continue;
    out += "/" + part;
  }
  return out.empty() ? "/" : out;
}

std::vector<XpraSocketDir> xpra_socket_dirs(const XpraSocketSettings& settings,
                                            const std::vector<std::string>& extra_dirs) {
  std::vector<XpraSocketDir> dirs;
  auto add = [&](const std::string& raw, const std::string& source) {
    // Not stripped: Xpra splits socket-dirs at ':' and uses the parts as they are.
    const std::string path = tidy_dir_path(raw);
    if (path.empty()) return;
    if (std::any_of(dirs.begin(), dirs.end(), [&](const XpraSocketDir& d) { return d.path == path; })) return;
    dirs.push_back({path, source, xpra_dir_is_per_user(path)});
  };
  const std::string builtin = "xpra built-in default";
  // DotXpra puts socket-dir first.
  for (const auto& v : settings.socket_dir.values) add(v, settings.socket_dir.source);
  for (const auto& v : settings.socket_dirs.values)
    for (const auto& part : split(v, ':'))
      add(part, settings.socket_dirs.source.empty() ? builtin : settings.socket_dirs.source);
  for (const auto& d : extra_dirs) add(d, "xpra-socket-dirs");
  return dirs;
}

// ---- host side ---------------------------------------------------------------

namespace {

bool read_regular_file(const std::string& path, std::string& text, std::string& problem) {
  // Xpra's os.path.isfile() follows a link; so does this. These files are
  // root's (like the broker's own config).
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  struct stat st {};
  if (!fd) {
    if (errno != ENOENT) problem = path + ": " + std::strerror(errno);
    return false;
  }
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  constexpr std::size_t kMaxConfigFile = 1 << 20;
  char buf[8192];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) > 0;) {
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigFile) {
      problem = path + ": larger than 1 MiB, not read";
      return false;
    }
  }
  return true;
}

}  // namespace

std::vector<XpraConfFile> read_xpra_config_files(const std::vector<std::string>& config_dirs,
                                                 std::vector<std::string>& problems) {
  std::vector<XpraConfFile> files;
  auto read = [&](const std::string& path) {
    XpraConfFile file{path, {}};
    std::string problem;
    if (read_regular_file(path, file.text, problem))
      files.push_back(std::move(file));
    else if (!problem.empty())
      problems.push_back(problem);
  };
  for (const auto& dir : config_dirs) {
    const std::string conf_d = dir + "/conf.d";
    std::vector<std::string> names;
    if (DIR* stream = ::opendir(conf_d.c_str())) {
      while (const dirent* entry = ::readdir(stream)) {
        const std::string name = entry->d_name;
        if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".conf") == 0) names.push_back(name);
      }
      ::closedir(stream);
    }
    std::sort(names.begin(), names.end());  // Python's sorted(): by code point, i.e. bytes
    for (const auto& name : names) read(conf_d + "/" + name);
    read(dir + "/xpra.conf");
  }
  return files;
}

}  // namespace xpra_broker
