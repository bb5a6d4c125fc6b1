// The one table of who holds which display. Pure data with indexes by lease
// id, display, uid and connection, so every lookup and quota check is O(1) or
// O(log n) and never scans all leases.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>


namespace xpra_broker {

using ConnectionId = std::uint64_t;

// The host's hold on one process (a pidfd on Linux: host/linux_host.h);
// opaque to the core.
struct ProcessHandle;

// A process the holder reported under its lease, held by the host's handle.
struct TrackedProcess {
  pid_t pid = 0;
  int role = 0;  // v1::ProcessRole
  std::shared_ptr<ProcessHandle> handle;
  pid_t group_leader = 0;    // its pgid, when it leads its process group
  pid_t session_leader = 0;  // its sid, when it leads its session
  std::uint64_t start_time = 0;
};

struct Lease {
  std::string id;
  std::uint32_t display = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t holder_pid = 0;
  std::string user;
  std::string runtime_dir;
  std::string purpose;
  ConnectionId connection = 0;
  std::chrono::system_clock::time_point acquired_at;
  std::chrono::steady_clock::time_point acquired_steady;
  // Ended, its processes being reaped: it still holds its display and counts
  // against the quotas until nothing of it runs.
  bool ending = false;
  std::vector<TrackedProcess> processes;
  // Durable leases: the secret the holder reattaches with after a broker
  // restart, and, while recovered but not yet reattached, until when the
  // holder may come back (connection is 0 meanwhile).
  std::string reattach_token;
  bool detached = false;
  std::chrono::steady_clock::time_point reattach_deadline;
};

class LeaseTable {
 public:
  // Adds a lease; false if its id or display is already present.
  bool add(Lease lease);
  // Removes and returns the lease.
  std::optional<Lease> remove(std::string id);  // by value: callers pass ids that live in the table

  const Lease* find(const std::string& id) const;
  Lease* find_mutable(const std::string& id);
  Lease* find_mutable_by_display(std::uint32_t display);
  const Lease* find_by_display(std::uint32_t display) const;

  std::size_t size() const { return by_id_.size(); }
  std::size_t count_for_uid(uid_t uid) const;

  std::vector<const Lease*> for_uid(uid_t uid) const;
  std::vector<std::string> ids_for_connection(ConnectionId connection) const;
  // Every lease, ordered by display.
  std::vector<const Lease*> all() const;
  // A recovered lease's holder reattached on a new connection.
  void move_to_connection(const std::string& id, ConnectionId connection);

 private:
  std::unordered_map<std::string, Lease> by_id_;
  std::map<std::uint32_t, std::string> by_display_;
  std::unordered_map<uid_t, std::set<std::string>> by_uid_;
  std::unordered_map<ConnectionId, std::set<std::string>> by_connection_;
};

}  // namespace xpra_broker
