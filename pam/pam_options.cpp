#include "pam_options.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>

namespace xpra_broker::pam {

namespace {

constexpr std::string_view kKnownOptions = "socket=PATH, timeout=MS, fail=open|closed, reap=yes|no, debug";

// sizeof(sockaddr_un::sun_path) is 108 on Linux, one byte of it for the NUL.
constexpr std::size_t kMaxSocketPath = 107;

std::string quoted(std::string_view text) {
  // Bounded and printable, so a garbled service file cannot flood the log.
  std::string out = "'";
  for (char c : text.substr(0, 200)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (text.size() > 200) out += "...";
  return out + "'";
}

std::optional<std::string> set_socket(ModuleOptions& o, std::string_view value) {
  if (value.empty() || value.front() != '/') return "must be an absolute path";
  if (value.size() > kMaxSocketPath) return "is longer than 107 bytes (the limit of a Unix socket path)";
  if (std::any_of(value.begin(), value.end(), [](char c) { return c < 0x20 || c == 0x7f; }))
    return "contains control characters";
  o.socket = std::string(value);
  return std::nullopt;
}

std::optional<std::string> set_timeout(ModuleOptions& o, std::string_view value) {
  const auto bad = "must be a whole number of milliseconds from " + std::to_string(kMinTimeout.count()) + " to " +
                   std::to_string(kMaxTimeout.count());
  long long ms = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, ms);
  if (value.empty() || ec != std::errc{} || ptr != end) return bad;
  if (ms < kMinTimeout.count() || ms > kMaxTimeout.count()) return bad;
  o.timeout = std::chrono::milliseconds(ms);
  return std::nullopt;
}

std::optional<std::string> set_fail(ModuleOptions& o, std::string_view value) {
  if (value == "open") {
    o.fail = FailMode::open;
  } else if (value == "closed") {
    o.fail = FailMode::closed;
  } else {
    return "must be 'open' (let the login through) or 'closed' (refuse the session)";
  }
  return std::nullopt;
}

std::optional<std::string> set_reap(ModuleOptions& o, std::string_view value) {
  if (value == "yes") {
    o.reap_leases = true;
  } else if (value == "no") {
    o.reap_leases = false;
  } else {
    return "must be 'yes' (end the user's leases at the last logout) or 'no' (keep them)";
  }
  return std::nullopt;
}

}  // namespace

ParsedOptions parse_module_options(std::span<const char* const> args) {
  ParsedOptions parsed;
  for (const char* raw : args) {
    if (raw == nullptr) continue;
    const std::string_view arg(raw);
    if (arg == "debug") {
      parsed.options.debug = true;
      continue;
    }
    const auto eq = arg.find('=');
    const std::string_view key = arg.substr(0, eq);
    if (eq == std::string_view::npos) {
      if (key == "socket" || key == "timeout" || key == "fail" || key == "reap")
        parsed.errors.push_back("option " + quoted(arg) + " needs a value (" + std::string(key) + "=...)");
      else
        parsed.errors.push_back("unknown option " + quoted(arg) + "; known options: " + std::string(kKnownOptions));
      continue;
    }
    const std::string_view value = arg.substr(eq + 1);
    std::optional<std::string> error;
    if (key == "socket") {
      error = set_socket(parsed.options, value);
    } else if (key == "timeout") {
      error = set_timeout(parsed.options, value);
    } else if (key == "fail") {
      error = set_fail(parsed.options, value);
    } else if (key == "reap") {
      error = set_reap(parsed.options, value);
    } else if (key == "debug") {
      error = "takes no value (write just 'debug')";
    } else {
      parsed.errors.push_back("unknown option " + quoted(arg) + "; known options: " + std::string(kKnownOptions));
      continue;
    }
    if (error) parsed.errors.push_back("bad option " + quoted(arg) + ": " + std::string(key) + " " + *error);
  }
  return parsed;
}

const char* to_string(FailMode mode) { return mode == FailMode::closed ? "closed" : "open"; }

}  // namespace xpra_broker::pam
