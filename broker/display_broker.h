// The broker's decisions and state, without any networking: a request from a
// caller (identity from the kernel) goes in, a response comes out. The server
// (broker_server.h) owns sockets and calls in here; tests drive it directly.
//
// One handler per protocol verb, dispatched from one table after the central
// access check in policy.h.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "config.h"
#include "display_allocator.h"
#include "display_probe.h"
#include "lease_table.h"
#include "policy.h"
#include "user_directories.h"
#include "protocol.h"

namespace xpra_broker {

class DisplayBroker {
 public:
  using SteadyClock = std::function<SteadyTime()>;

  DisplayBroker(const BrokerConfig& config, AccessPolicy policy, std::unique_ptr<DisplayProbe> probe,
                std::unique_ptr<UserDirectories> user_dirs, SteadyClock clock = std::chrono::steady_clock::now);

  // Handles one request. Never throws for anything a client can send.
  v1::Response handle(const Caller& caller, ConnectionId connection, const v1::Request& request);

  // The connection is gone (exit, crash, kill -9): its leases end.
  void connection_closed(ConnectionId connection);

  // Start-up findings the admin should see in `status` too.
  void set_warnings(std::vector<std::string> warnings) { warnings_ = std::move(warnings); }

  // Numbers of connections the server has open, for `status`.
  void set_connection_count(std::size_t count) { connections_ = count; }

  const LeaseTable& leases() const { return leases_; }
  const DisplayAllocator& allocator() const { return allocator_; }

 private:
  v1::Response acquire(const Caller&, ConnectionId, const v1::Request&);
  v1::Response release(const Caller&, ConnectionId, const v1::Request&);
  v1::Response list(const Caller&, ConnectionId, const v1::Request&);
  v1::Response status(const Caller&, ConnectionId, const v1::Request&);
  v1::Response open_login(const Caller&, ConnectionId, const v1::Request&);
  v1::Response close_login(const Caller&, ConnectionId, const v1::Request&);

  using Handler = v1::Response (DisplayBroker::*)(const Caller&, ConnectionId, const v1::Request&);
  static const std::unordered_map<int, Handler>& handlers();

  // Picks a display that is free in the table and on the host, or nullopt.
  std::optional<std::uint32_t> pick_free_display(const std::string& user_dir);
  // Ends a lease: the one place a display goes back to the pool.
  void end_lease(std::string id, const std::string& why);
  std::string user_name(uid_t uid);
  void fill_lease(const Lease& lease, v1::Lease* out) const;

  BrokerConfig config_;
  AccessPolicy policy_;
  std::unique_ptr<DisplayProbe> probe_;
  std::unique_ptr<UserDirectories> user_dirs_;
  SteadyClock clock_;
  SteadyTime started_;
  DisplayAllocator allocator_;
  LeaseTable leases_;
  // What the last probe found on each blocked display, for `status`.
  std::map<std::uint32_t, DisplayVerdict> host_findings_;
  std::unordered_map<uid_t, std::uint32_t> login_sessions_;
  std::unordered_map<uid_t, std::string> user_names_;
  std::size_t connections_ = 0;
  std::vector<std::string> warnings_;
};

std::string new_lease_id();

}  // namespace xpra_broker
