// Reads what the broker needs to know about host processes from /proc, and
// opens pidfds so that a process is named without pid-reuse races.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/lease_table.h"  // ProcessHandle
#include "unique_fd.h"

namespace xpra_broker {

// The core's opaque hold on a process (lease_table.h): a pidfd, which names
// this very process even after its pid is reused.
struct ProcessHandle {
  UniqueFd pidfd;
};

struct ProcessInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  uid_t uid = 0;   // real uid
  uid_t euid = 0;  // effective uid (differs for a setuid X server such as Xorg.wrap)
  uid_t suid = 0;  // saved set-user-id
  std::string comm;
  char state = '?';
  std::uint64_t start_time = 0;  // clock ticks after boot: tells a reused pid apart
};

// Reads /proc/<pid>/stat and /proc/<pid>/status. False if it is gone.
bool read_process(pid_t pid, ProcessInfo& out);

// Every process on the host (a snapshot; entries can vanish meanwhile). With
// only_uid, processes whose /proc entry another uid owns are skipped before
// any file of theirs is read: the scan then costs one fstatat per process.
std::vector<ProcessInfo> list_processes(std::optional<uid_t> only_uid = std::nullopt);

// pidfd_open(pid) and a check that the pidfd names the process `info` was read
// from: re-reading after the pidfd exists closes the pid-reuse window.
// Returns an invalid fd if the process is gone or not what was expected.
UniqueFd open_verified_pidfd(pid_t pid, ProcessInfo& info);

// True while the process behind the pidfd has not exited.
bool pidfd_alive(int pidfd);

// Is the process behind `pidfd` (pid `pid`) still `uid`'s, in its real,
// effective and saved uid? Read now, then the pidfd checked alive, so the
// answer is about this very process. False once it exec'd a setuid program
// (or otherwise changed owner): the broker must not act on it any more.
bool process_still_owned_by(pid_t pid, int pidfd, uid_t uid);

// Does the process's command line (/proc/<pid>/cmdline, first 64 KiB) hold
// `argument` as one whole argument?
bool process_has_argument(pid_t pid, const std::string& argument);

// The display an X server's arguments name: the last argument ":<digits>"
// after the program name (X itself takes the last one given), or nullopt.
// One process serves one display, however many ":N" it lists, so a process
// of any name cannot vouch for a whole range of locks (issue 21).
std::optional<std::uint32_t> display_of_arguments(const std::vector<std::string>& arguments);
// Does the process at `pid` serve `display` by that rule?
bool process_serves_display(pid_t pid, std::uint32_t display);

// X server processes on the host (by command name); reads only the short
// /proc/<pid>/comm of other processes.
std::vector<ProcessInfo> list_x_servers();

// The X server program names the census counts.
bool is_x_server_command(const std::string& comm);

}  // namespace xpra_broker
