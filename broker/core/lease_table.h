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

#include "core/lease.h"

namespace xpra_broker {

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
