// What `exec` asks the broker for and runs on the lease it gets: the purpose
// it acquires with, and the command's argv and environment, completed from
// the lease (display, runtime dir, id). Decided in the parent, before any
// fork; no I/O beyond asking xpra its version and looking at /run/user/UID.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol.h"

namespace xpra_broker::client {

// Replaces {display} and {runtime_dir} in one argument.
std::string substitute_placeholders(const std::string& arg, std::uint32_t display, const std::string& runtime_dir);

// The purpose shown to admins and logged: `requested` (--purpose), or the
// program's base name; the broker takes printable UTF-8 only, at most 128
// bytes, cut here never inside a UTF-8 sequence. nullopt if `requested` is
// not printable text.
std::optional<std::string> acquire_purpose(const std::string& requested, const std::string& program);

// One variable the command gets; `overwrite` false: a value the user set wins.
struct EnvSetting {
  std::string name;
  std::string value;
  bool overwrite = true;
};

// What the command finds in its environment about its lease: DISPLAY and the
// XPRA_BROKER_* variables, and under --xpra (`xpra_major`: its version, 0 not
// told) what keeps Xpra's state in the lease's dir.
std::vector<EnvSetting> lease_environment(const v1::Lease& lease, bool xpra, int xpra_major);

struct SessionCommand {
  std::vector<std::string> args;
  std::vector<EnvSetting> env;
};

// CMD with its placeholders replaced, or under --xpra completed with the
// display, --socket-dir and --daemon=no (xpra_command.h).
SessionCommand session_command(const std::vector<std::string>& command, bool xpra, const v1::Lease& lease);

}  // namespace xpra_broker::client
