// The broker's parts wired as main() wires them (daemon/main.cpp), for the
// tests, benchmarks and fuzzers that drive the lease core through the real
// host with a probe of their own: LinuxHost + LeaseCore + DurableLeases.
// It adds no logic; each call goes to the part that owns it.
#pragma once

#include <memory>
#include <vector>

#include "daemon/config.h"
#include "durable/durable_leases.h"
#include "core/lease_core.h"
#include "host/linux_host.h"

namespace xpra_broker {

class HostedBroker {
 public:
  HostedBroker(const BrokerConfig& config, AccessPolicy policy, std::unique_ptr<DisplayProbe> probe,
               std::unique_ptr<UserDirectories> user_dirs,
               LinuxHost::SteadyClock clock = std::chrono::steady_clock::now)
      : host_(std::move(probe), std::move(user_dirs), std::move(clock)),
        core_(core_settings(config), std::move(policy), host_) {}
  // The core holds a reference to the host next to it: never moved.
  HostedBroker(HostedBroker&&) = delete;

  // As the server calls the core: records of the request batched when the
  // group commit is on.
  v1::Response handle(const Caller& caller, ConnectionId connection, const v1::Request& request) {
    if (durable_) durable_->begin_request();
    v1::Response response = core_.handle(caller, connection, request);
    if (durable_) durable_->end_request();
    return response;
  }
  void connection_closed(ConnectionId connection) { core_.connection_closed(connection); }

  void set_lifecycle(LeaseReaper* reaper, StaleArtifactCleaner* cleaner) { host_.set_lifecycle(reaper, cleaner); }
  void set_x_server_census(const XServerCensus* census) { host_.set_x_server_census(census); }
  void set_xpra_socket_dir_notes(std::vector<XpraDirReport> notes) {
    host_.set_xpra_socket_dir_notes(std::move(notes));
  }
  void set_warnings(std::vector<std::string> warnings) { core_.set_warnings(std::move(warnings)); }
  void set_connection_count(std::size_t count) { core_.set_connection_count(count); }

  void set_journal(LeaseJournal* journal) { durable_ = std::make_unique<DurableLeases>(*journal, core_); }
  void set_group_commit(bool on) { durable_->set_group_commit(on); }
  bool journal_uncommitted() const { return durable_ && durable_->has_uncommitted(); }
  DurableLeases::CommitOutcome commit_journal() {
    return durable_ ? durable_->commit_turn({}) : DurableLeases::CommitOutcome{};
  }
  v1::Response reply_after_failed_commit(v1::Response response, const DurableLeases::CommitOutcome& outcome) {
    return durable_->reply_after_failed_commit(std::move(response), outcome.withdrawn);
  }
  void retry_journal() {
    if (durable_) durable_->retry();
  }
  LeaseCore::RestoreSummary restore(const std::vector<journal::JournaledLease>& leases, std::chrono::seconds grace) {
    return core_.restore(from_journaled(leases), grace);
  }
  void restore_logins(const std::map<std::uint32_t, std::uint32_t>& logins) { core_.restore_logins(logins); }
  void expire_detached() { core_.expire_detached(); }
  void check_for_leaked_x_servers() { core_.check_for_leaked_x_servers(); }

  const LeaseTable& leases() const { return core_.leases(); }
  const DisplayAllocator& allocator() const { return core_.allocator(); }
  BrokerCounters& counters() { return core_.counters(); }
  MetricsSnapshot metrics_snapshot() { return core_.metrics_snapshot(); }
  LeaseCore& core() { return core_; }
  LinuxHost& host() { return host_; }

 private:
  LinuxHost host_;
  LeaseCore core_;
  std::unique_ptr<DurableLeases> durable_;
};

}  // namespace xpra_broker
