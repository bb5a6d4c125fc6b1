#include "process_tree.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <set>
#include <string>

namespace xpra_broker::client {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kPollInterval = std::chrono::milliseconds(20);
// SIGKILL cannot be resisted: this only bounds the wait for the last zombies.
constexpr auto kWaitAfterKill = std::chrono::seconds(5);

// The children of every thread of `pid` (a child belongs to the thread that
// forked it, and Xpra forks from several).
void append_children(pid_t pid, std::vector<pid_t>& out) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (!dir) return;  // gone, or no longer ours to read
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream children(tasks + "/" + entry->d_name + "/children");
    for (long child; children >> child;) out.push_back(static_cast<pid_t>(child));
  }
  ::closedir(dir);
}

void sleep_for(std::chrono::milliseconds d) { ::usleep(static_cast<useconds_t>(d.count() * 1000)); }

}  // namespace

std::vector<pid_t> list_own_descendants() {
  std::vector<pid_t> found;
  append_children(::getpid(), found);
  std::set<pid_t> seen(found.begin(), found.end());
  for (std::size_t i = 0; i < found.size(); ++i) {
    std::vector<pid_t> below;
    append_children(found[i], below);
    for (pid_t p : below)
      if (seen.insert(p).second) found.push_back(p);
  }
  return found;
}

void reap_exited(const std::function<void(pid_t, int)>& on_reaped) {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (on_reaped) on_reaped(pid, status);
  }
}

namespace {

// Reaps what has exited; false once the caller has no child at all.
bool has_children(const std::function<void(pid_t, int)>& on_reaped) {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0) return true;
    if (pid < 0) return errno != ECHILD;
    if (on_reaped) on_reaped(pid, status);
  }
}

}  // namespace

TreeStop end_process_tree(std::optional<std::chrono::milliseconds> grace,
                          const std::function<void(pid_t, int)>& on_reaped) {
  TreeStop stop;
  std::set<pid_t> signalled;
  const std::optional<Clock::time_point> term_until =
      grace ? std::optional<Clock::time_point>(Clock::now() + *grace) : std::nullopt;
  std::optional<Clock::time_point> killed_at;
  bool any_signal = false;
  while (has_children(on_reaped)) {
    const auto now = Clock::now();
    if (!killed_at && term_until && now >= *term_until) killed_at = now;
    if (killed_at && now >= *killed_at + kWaitAfterKill) {
      stop.end = TreeEnd::gave_up;
      break;
    }
    for (pid_t pid : list_own_descendants()) {
      if (killed_at) {
        ::kill(pid, SIGKILL);
      } else if (signalled.insert(pid).second) {
        ::kill(pid, SIGTERM);
        ::kill(pid, SIGCONT);  // a stopped process cannot act on SIGTERM
      }
      signalled.insert(pid);
      any_signal = true;
    }
    sleep_for(kPollInterval);
  }
  stop.signalled = signalled.size();
  if (stop.end != TreeEnd::gave_up)
    stop.end = !any_signal ? TreeEnd::nothing_left : killed_at ? TreeEnd::killed : TreeEnd::ended_on_term;
  return stop;
}

}  // namespace xpra_broker::client
