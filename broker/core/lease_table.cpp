#include "core/lease_table.h"

#include <algorithm>

namespace xpra_broker {

bool LeaseTable::add(Lease lease) {
  if (by_id_.count(lease.id) || by_display_.count(lease.display)) return false;
  by_display_.emplace(lease.display, lease.id);
  by_uid_[lease.uid].insert(lease.id);
  by_connection_[lease.connection].insert(lease.id);
  const std::string id = lease.id;
  by_id_.emplace(id, std::move(lease));
  return true;
}

std::optional<Lease> LeaseTable::remove(std::string id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  Lease lease = std::move(it->second);
  by_id_.erase(it);
  by_display_.erase(lease.display);
  if (auto u = by_uid_.find(lease.uid); u != by_uid_.end()) {
    u->second.erase(id);
    if (u->second.empty()) by_uid_.erase(u);
  }
  if (auto c = by_connection_.find(lease.connection); c != by_connection_.end()) {
    c->second.erase(id);
    if (c->second.empty()) by_connection_.erase(c);
  }
  return lease;
}

const Lease* LeaseTable::find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

Lease* LeaseTable::find_mutable(const std::string& id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

Lease* LeaseTable::find_mutable_by_display(std::uint32_t display) {
  const auto it = by_display_.find(display);
  return it == by_display_.end() ? nullptr : find_mutable(it->second);
}

const Lease* LeaseTable::find_by_display(std::uint32_t display) const {
  auto it = by_display_.find(display);
  return it == by_display_.end() ? nullptr : find(it->second);
}

std::size_t LeaseTable::count_for_uid(uid_t uid) const {
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? 0 : it->second.size();
}

std::vector<const Lease*> LeaseTable::for_uid(uid_t uid) const {
  std::vector<const Lease*> out;
  if (auto it = by_uid_.find(uid); it != by_uid_.end())
    for (const auto& id : it->second) out.push_back(find(id));
  std::sort(out.begin(), out.end(), [](const Lease* a, const Lease* b) { return a->display < b->display; });
  return out;
}

std::vector<std::string> LeaseTable::ids_for_connection(ConnectionId connection) const {
  auto it = by_connection_.find(connection);
  if (it == by_connection_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::vector<const Lease*> LeaseTable::all() const {
  std::vector<const Lease*> out;
  out.reserve(by_display_.size());
  for (const auto& [display, id] : by_display_) out.push_back(find(id));
  return out;
}

}  // namespace xpra_broker

namespace xpra_broker {

void LeaseTable::move_to_connection(const std::string& id, ConnectionId connection) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  if (auto c = by_connection_.find(it->second.connection); c != by_connection_.end()) {
    c->second.erase(id);
    if (c->second.empty()) by_connection_.erase(c);
  }
  it->second.connection = connection;
  by_connection_[connection].insert(id);
}

}  // namespace xpra_broker
