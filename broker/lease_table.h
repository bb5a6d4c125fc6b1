// The one table of who holds which display. Pure data with indexes by lease
// id, display, uid and connection, so every lookup and quota check is O(1) or
// O(log n) and never scans all leases.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace xpra_broker {

using ConnectionId = std::uint64_t;

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
};

class LeaseTable {
 public:
  // Adds a lease; false if its id or display is already present.
  bool add(Lease lease);
  // Removes and returns the lease.
  std::optional<Lease> remove(std::string id);  // by value: callers pass ids that live in the table

  const Lease* find(const std::string& id) const;
  const Lease* find_by_display(std::uint32_t display) const;

  std::size_t size() const { return by_id_.size(); }
  std::size_t count_for_uid(uid_t uid) const;

  std::vector<const Lease*> for_uid(uid_t uid) const;
  std::vector<std::string> ids_for_connection(ConnectionId connection) const;
  // Every lease, ordered by display.
  std::vector<const Lease*> all() const;

 private:
  std::unordered_map<std::string, Lease> by_id_;
  std::map<std::uint32_t, std::string> by_display_;
  std::unordered_map<uid_t, std::set<std::string>> by_uid_;
  std::unordered_map<ConnectionId, std::set<std::string>> by_connection_;
};

}  // namespace xpra_broker
