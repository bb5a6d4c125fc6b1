#include "query_commands.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "deleted_open_files.h"
#include "exit_codes.h"
#include "unique_fd.h"
#include "untrusted_text.h"

namespace xpra_broker::client {

namespace {

const char* state_name(v1::LeaseState state) {
  switch (state) {
    case v1::ACTIVE: return "active";
    case v1::RELEASED: return "released";
    case v1::ENDING: return "ending";
    case v1::DETACHED: return "detached";
    default: return "unknown";
  }
}

nlohmann::json lease_json(const v1::Lease& lease) {
  return {{"lease", lease.id()},
          {"display", lease.display()},
          {"uid", lease.uid()},
          {"user", lease.user()},
          {"pid", lease.pid()},
          {"runtime_dir", lease.runtime_dir()},
          {"state", state_name(lease.state())},
          {"acquired_unix_ms", lease.acquired_unix_ms()},
          {"purpose", lease.purpose()},
          {"processes", lease.process_pids()}};
}

// Text from the broker may hold what another user typed (a purpose, a
// reason): escaped before it reaches a terminal.
std::string safe(const std::string& text, std::size_t max = 256) { return escape_untrusted(text, max); }

// JSON stays JSON: strings are encoded by the JSON library, and anything
// that is not UTF-8 is replaced rather than aborting the output.
std::string dump_json(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// One word, so that `awk '{print $6}'` gets the whole time: ISO 8601 with
// the offset, local time.
std::string format_time(std::int64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tm);
  return buf;
}

// Releases one lease (the request says which) and waits until it is reaped:
// then its processes are gone and the display is free. Another user's lease
// (an admin's release) is only in the --all list.
int release_one(BrokerConnection& conn, const GlobalOptions& options, const v1::Request& request) {
  v1::Response response;
  if (int rc = call_or_report(conn, options, request, response); rc != kExitOk) return rc;
  const auto& lease = response.release().lease();
  wait_until_lease_gone(conn, lease.id(), lease.uid() != ::getuid(), std::chrono::seconds(30));
  std::cout << "released lease " << safe(lease.id(), 64) << " (display :" << lease.display() << ", user "
            << safe(lease.user(), 64) << ")\n";
  return kExitOk;
}

}  // namespace

std::string format_table(const std::vector<std::vector<std::string>>& rows, bool legend) {
  std::vector<std::size_t> width;
  const std::size_t first = legend ? 0 : 1;
  for (std::size_t r = first; r < rows.size(); ++r)
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      if (width.size() <= c) width.resize(c + 1, 0);
      width[c] = std::max(width[c], rows[r][c].size());
    }
  std::string out;
  for (std::size_t r = first; r < rows.size(); ++r) {
    std::string line;
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      line += rows[r][c];
      if (c + 1 < rows[r].size()) line += std::string(width[c] - rows[r][c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

int run_list(const GlobalOptions& options, const ListOptions& list) {
  auto conn = connect_or_report(options);
  if (!conn.connected()) return kExitUnavailable;
  v1::Request request;
  request.mutable_list()->set_all(list.all);
  v1::Response response;
  if (int rc = call_or_report(conn, options, request, response); rc != kExitOk) return rc;
  if (list.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& lease : response.list().leases()) out.push_back(lease_json(lease));
    std::cout << dump_json(out) << "\n";
    return kExitOk;
  }
  if (response.list().leases().empty()) {
    if (list.legend) std::cout << (list.all ? "no leases\n" : "you hold no leases\n");
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"LEASE", "DISPLAY", "STATE", "USER", "PID", "SINCE", "RUNTIME_DIR", "PURPOSE"}};
  for (const auto& l : response.list().leases())
    rows.push_back({safe(l.id(), 64), ":" + std::to_string(l.display()), state_name(l.state()), safe(l.user(), 64),
                    std::to_string(l.pid()), format_time(l.acquired_unix_ms()), safe(l.runtime_dir()),
                    safe(l.purpose())});
  std::cout << format_table(rows, list.legend);
  if (list.legend && response.list().leases_total() > static_cast<std::uint32_t>(response.list().leases_size()))
    std::printf("(%u more not shown)\n", response.list().leases_total() - response.list().leases_size());
  return kExitOk;
}

int run_release(const GlobalOptions& options, const std::string& target, const std::string& user) {
  if (!user.empty()) {
    // Every lease of one user: as listed to an admin (the broker decides who
    // may see and end them), each released like `release LEASE_ID`.
    auto conn = connect_or_report(options);
    if (!conn.connected()) return kExitUnavailable;
    v1::Request list;
    list.mutable_list()->set_all(true);
    v1::Response listed;
    if (int rc = call_or_report(conn, options, list, listed); rc != kExitOk) return rc;
    int rc = kExitOk, released = 0;
    for (const auto& lease : listed.list().leases()) {
      if (lease.user() != user && std::to_string(lease.uid()) != user) continue;
      v1::Request request;
      request.mutable_release()->set_lease_id(lease.id());
      if (int one = release_one(conn, options, request); one != kExitOk && one != kExitNotFound) rc = one;
      ++released;
    }
    if (released == 0) {
      report_error("user " + safe(user, 64) + " holds no lease", "'xpra-request-display list --all' shows every lease");
      return rc == kExitOk ? kExitNotFound : rc;
    }
    return rc;
  }
  v1::Request request;
  if (!target.empty() && target[0] == ':') {
    std::uint32_t display = 0;
    const char* end = target.data() + target.size();
    auto [ptr, ec] = std::from_chars(target.data() + 1, end, display);
    if (ec != std::errc{} || ptr != end || target.size() == 1) {
      report_error("'" + safe(target, 64) + "' is not a display", "use :N (e.g. :105) or a lease id from 'list'");
      return kExitUsage;
    }
    request.mutable_release()->set_display(display);
  } else {
    request.mutable_release()->set_lease_id(target);
  }
  auto conn = connect_or_report(options);
  if (!conn.connected()) return kExitUnavailable;
  return release_one(conn, options, request);
}

// Who uses the runtime dir's space when it runs low (issue 21, attack 2):
// the broker's survey of each <runtime-dir>/<uid>, and, when run as root,
// the files deleted but kept open there, which only /proc/<pid>/fd shows
// (the broker has no ptrace rights to look).
struct RuntimeUsageRow {
  std::uint32_t uid = 0;
  std::string user;
  std::uint64_t bytes = 0;
  bool incomplete = false;
  std::uint64_t deleted_open_bytes = 0;
  std::vector<DeletedOpenFile> deleted_open;
};

std::vector<RuntimeUsageRow> runtime_usage(const v1::RuntimeSpace& space, bool& looked_for_deleted) {
  std::vector<RuntimeUsageRow> rows;
  for (const auto& u : space.users()) rows.push_back({u.uid(), u.user(), u.bytes(), u.incomplete(), 0, {}});
  looked_for_deleted = space.running_low() && !space.path().empty() && ::geteuid() == 0;
  if (!looked_for_deleted) return rows;
  for (auto& file : deleted_open_files_under(space.path())) {
    const auto uid = file.dir_uid >= 0 ? static_cast<std::uint32_t>(file.dir_uid) : file.holder_uid;
    auto row = std::find_if(rows.begin(), rows.end(), [uid](const RuntimeUsageRow& r) { return r.uid == uid; });
    if (row == rows.end()) {
      const passwd* pw = ::getpwuid(uid);
      rows.push_back({uid, pw ? pw->pw_name : std::to_string(uid), 0, false, 0, {}});
      row = rows.end() - 1;
    }
    row->deleted_open_bytes += file.bytes;
    row->deleted_open.push_back(std::move(file));
  }
  std::sort(rows.begin(), rows.end(), [](const RuntimeUsageRow& a, const RuntimeUsageRow& b) {
    return a.bytes + a.deleted_open_bytes > b.bytes + b.deleted_open_bytes;
  });
  return rows;
}

std::string mib(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

void print_runtime_space(const v1::RuntimeSpace& space, const std::vector<RuntimeUsageRow>& rows,
                         bool looked_for_deleted) {
  if (space.size_bytes() == 0) return;
  std::printf("runtime dir   %s: %s free of %s%s\n", safe(space.path()).c_str(), mib(space.free_bytes()).c_str(),
              mib(space.size_bytes()).c_str(), space.running_low() ? " (RUNNING LOW)" : "");
  if (!space.running_low()) return;
  std::printf("  who uses it (approximate: allocated blocks the broker can see%s):\n",
              looked_for_deleted ? ", and files deleted but kept open" : "");
  for (const auto& r : rows) {
    std::printf("  %-12s uid %-7u %s in %s/%u%s", safe(r.user, 64).c_str(), r.uid, mib(r.bytes).c_str(),
                safe(space.path()).c_str(), r.uid, r.incomplete ? " (or more: some of it is closed to the broker)" : "");
    if (r.deleted_open_bytes > 0) {
      std::printf(", %s deleted but kept open by pid", mib(r.deleted_open_bytes).c_str());
      for (const auto& f : r.deleted_open) std::printf(" %d", static_cast<int>(f.pid));
    }
    std::printf("\n");
  }
  if (space.unattributed_bytes() > 0)
    std::printf("  in no user's directory: %s (the broker's journal, files deleted but kept open%s)\n",
                mib(space.unattributed_bytes()).c_str(), looked_for_deleted ? "" : ": run status as root to name them");
}

int run_status(const GlobalOptions& options, bool json) {
  auto conn = connect_or_report(options);
  if (!conn.connected()) return kExitUnavailable;
  v1::Request request;
  request.mutable_status();
  v1::Response response;
  if (int rc = call_or_report(conn, options, request, response); rc != kExitOk) return rc;
  const auto& s = response.status_reply();
  bool looked_for_deleted = false;
  const auto usage = runtime_usage(s.runtime_space(), looked_for_deleted);
  if (json) {
    nlohmann::json usage_rows = nlohmann::json::array();
    for (const auto& r : usage) {
      nlohmann::json deleted = nlohmann::json::array();
      for (const auto& f : r.deleted_open)
        deleted.push_back({{"pid", f.pid}, {"holder_uid", f.holder_uid}, {"path", f.path}, {"bytes", f.bytes}});
      usage_rows.push_back({{"uid", r.uid},
                            {"user", r.user},
                            {"bytes", r.bytes},
                            {"incomplete", r.incomplete},
                            {"deleted_open_bytes", r.deleted_open_bytes},
                            {"deleted_open", deleted}});
    }
    const auto& space = s.runtime_space();
    nlohmann::json runtime_space = {{"path", space.path()},
                                    {"size_bytes", space.size_bytes()},
                                    {"free_bytes", space.free_bytes()},
                                    {"running_low", space.running_low()},
                                    {"users", usage_rows},
                                    {"unattributed_bytes", space.unattributed_bytes()},
                                    {"deleted_open_files_searched", looked_for_deleted}};
    nlohmann::json blocked = nlohmann::json::array();
    for (const auto& b : s.blocked())
      blocked.push_back({{"display", b.display()},
                         {"reason", b.reason()},
                         {"owner_uid", b.owner_uid()},
                         {"owner_unknown", b.owner_unknown()},
                         {"pid", b.pid()},
                         {"stale", b.stale()}});
    nlohmann::json holders = nlohmann::json::array();
    for (const auto& h : s.display_holders())
      holders.push_back({{"uid", h.uid()}, {"user", h.user()}, {"displays", h.displays()}});
    nlohmann::json x_servers = nlohmann::json::array();
    for (const auto& x : s.x_servers()) {
      nlohmann::json orphans = nlohmann::json::array();
      for (const auto& o : x.orphan_processes())
        orphans.push_back({{"pid", o.pid()}, {"comm", o.comm()}, {"lease", o.lease()}, {"display", o.display()}});
      x_servers.push_back({{"uid", x.uid()},
                           {"user", x.user()},
                           {"pids", x.pids()},
                           {"count", x.count()},
                           {"leases", x.leases()},
                           {"orphans", x.orphans()},
                           {"orphan_processes", orphans}});
    }
    nlohmann::json xpra_dirs = nlohmann::json::array();
    for (const auto& d : s.xpra_socket_dirs())
      xpra_dirs.push_back({{"path", d.path()}, {"source", d.source()}, {"shared", d.shared()}, {"state", d.state()}});
    nlohmann::json out = {{"version", s.version()},
                          {"range", {{"first", s.range_first()}, {"last", s.range_last()}}},
                          {"leases", s.leases()},
                          {"max_leases", s.max_leases()},
                          {"max_leases_per_user", s.max_leases_per_user()},
                          {"free_displays", s.free_displays()},
                          {"connections", s.connections()},
                          {"uptime_ms", s.uptime_ms()},
                          {"blocked", blocked},
                          {"blocked_total", s.blocked_total()},
                          {"display_holders", holders},
                          {"x_servers", x_servers},
                          {"x_server_users_total", s.x_server_users_total()},
                          {"x_servers_age_ms", s.x_servers_age_ms()},
                          {"orphans_seen_total", s.orphans_seen_total()},
                          {"stale_removed", s.stale_removed()},
                          {"watched_directories", s.watched_directories()},
                          {"watch_rescans", s.watch_rescans()},
                          {"watch_wakeups", s.watch_wakeups()},
                          {"watch_events", s.watch_events()},
                          {"watch_display_name_events", s.watch_display_name_events()},
                          {"journal",
                           {{"ok", s.journal_problem().empty()},
                            {"problem", s.journal_problem()},
                            {"owed_records", s.journal_owed_records()},
                            {"displays_awaiting_journal", s.displays_awaiting_journal()}}},
                          {"runtime_space", runtime_space},
                          {"xpra_socket_hostname", s.xpra_socket_hostname()},
                          {"xpra_socket_dirs", xpra_dirs},
                          {"warnings", s.warnings()}};
    std::cout << dump_json(out) << "\n";
    return kExitOk;
  }
  std::printf("xpra-brokerd %s, up %lld s\n", s.version().c_str(), static_cast<long long>(s.uptime_ms() / 1000));
  std::printf("displays      %u-%u, %u free\n", s.range_first(), s.range_last(), s.free_displays());
  std::printf("leases        %u (max %u, %u per user)\n", s.leases(), s.max_leases(), s.max_leases_per_user());
  std::printf("connections   %u\n", s.connections());
  if (!s.journal_problem().empty()) {
    std::printf("journal       DEGRADED: %s\n", safe(s.journal_problem(), 1024).c_str());
    if (s.journal_owed_records() > 0 || s.displays_awaiting_journal_size() > 0) {
      std::printf("              %u ended lease(s) or logout(s) not yet recorded", s.journal_owed_records());
      for (int i = 0; i < s.displays_awaiting_journal_size(); ++i)
        std::printf("%s:%u", i == 0 ? "; displays held until then: " : ", ", s.displays_awaiting_journal(i));
      std::printf("\n");
    }
  }
  if (s.blocked_size() > 0) {
    std::printf("skipped displays (used outside the broker, or leftovers):\n");
    for (const auto& b : s.blocked())
      std::printf("  :%-6u %-5s uid %-7s %s\n", b.display(), b.stale() ? "stale" : "live",
                  b.owner_unknown() ? "?" : std::to_string(b.owner_uid()).c_str(), safe(b.reason()).c_str());
    if (s.blocked_total() > static_cast<std::uint32_t>(s.blocked_size()))
      std::printf("  (%u more not shown)\n", s.blocked_total() - s.blocked_size());
  }
  if (s.display_holders_size() > 0) {
    std::printf("displays held outside the broker, by owner:\n");
    for (const auto& h : s.display_holders())
      std::printf("  %-12s uid %-6u %u display(s)\n", safe(h.user(), 64).c_str(), h.uid(), h.displays());
  }
  print_runtime_space(s.runtime_space(), usage, looked_for_deleted);
  std::printf("stale files removed since start: %u\n", s.stale_removed());
  if (s.watched_directories() > 0)
    std::printf("name watch    %u directories (inotify), %u rescans, woke the broker %llu times for %llu events "
                "(%llu about a display's name)\n",
                s.watched_directories(), s.watch_rescans(), static_cast<unsigned long long>(s.watch_wakeups()),
                static_cast<unsigned long long>(s.watch_events()),
                static_cast<unsigned long long>(s.watch_display_name_events()));
  else
    std::printf("name watch    off: every probe looks at the filesystem (see the broker's log)\n");
  if (s.xpra_socket_dirs_size() > 0) {
    std::printf("xpra socket dirs (display N's socket: %s-N):\n", safe(s.xpra_socket_hostname(), 64).c_str());
    for (const auto& d : s.xpra_socket_dirs())
      std::printf("  %-24s %s (from %s)\n", safe(d.path()).c_str(), safe(d.state()).c_str(),
                  safe(d.source()).c_str());
  }
  if (s.x_servers_size() > 0) {
    std::printf("X servers on the host:\n");
    for (const auto& x : s.x_servers()) {
      std::printf("  %-12s uid %-6u %3u X server(s), %u lease(s)", safe(x.user(), 64).c_str(), x.uid(),
                  x.count() ? x.count() : static_cast<std::uint32_t>(x.pids_size()), x.leases());
      if (x.orphans() > 0) {
        // Processes that outlived their lease: what an admin should look at.
        std::printf(", %u process(es) outlived their lease:", x.orphans());
        for (const auto& o : x.orphan_processes())
          std::printf(" %d %s (lease %s :%u)", o.pid(), safe(o.comm(), 32).c_str(), safe(o.lease(), 32).c_str(),
                      o.display());
      }
      std::printf("\n");
    }
    if (s.x_server_users_total() > static_cast<std::uint32_t>(s.x_servers_size()))
      std::printf("  (%u more users not shown)\n", s.x_server_users_total() - s.x_servers_size());
  }
  for (const auto& w : s.warnings()) std::printf("warning: %s\n", safe(w, 1024).c_str());
  return kExitOk;
}

std::string write_file_atomically(const std::string& path, std::string_view content, mode_t mode) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) return path + ": not a file name";
  // Same directory, so the rename cannot cross filesystems.
  std::string temp = dir + "/." + base + ".XXXXXX";
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd) return "cannot create a temporary file in " + dir + ": " + std::strerror(errno);
  const auto fail = [&](const std::string& what) {
    const std::string why = what + ": " + std::strerror(errno);
    ::unlink(temp.c_str());
    return why;
  };
  // mkostemp makes 0600; the collector may run as another user. fchmod is
  // not masked by the umask.
  if (::fchmod(fd.get(), mode) != 0) return fail("cannot set the mode of " + temp);
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write " + temp);
    done += static_cast<std::size_t>(n);
  }
  // No fsync: readers only need the rename to be atomic, and a file lost in
  // a crash is written again by the next run of the timer.
  if (::close(fd.release()) != 0) return fail("cannot write " + temp);
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("cannot rename " + temp + " to " + path);
  return {};
}

int run_metrics(const GlobalOptions& options, const std::string& output) {
  auto conn = connect_or_report(options);
  if (!conn.connected()) return kExitUnavailable;
  v1::Request request;
  request.mutable_metrics();
  v1::Response response;
  if (int rc = call_or_report(conn, options, request, response); rc != kExitOk) return rc;
  const std::string& text = response.metrics().exposition();
  if (output.empty()) {
    // The broker escaped what the format requires (user names in labels);
    // the text is printed as it will be scraped.
    std::cout << text << std::flush;
    return std::cout ? kExitOk : kExitIoError;
  }
  if (const std::string error = write_file_atomically(output, text, 0644); !error.empty()) {
    report_error(error, "FILE's directory must exist and be writable (node-exporter's textfile directory, "
                        "e.g. /var/lib/prometheus/node-exporter)");
    return kExitIoError;
  }
  return kExitOk;
}

}  // namespace xpra_broker::client
