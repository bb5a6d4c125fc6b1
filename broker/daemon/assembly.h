// The broker's rooms built complete, in one place: the host (the real
// machine behind the core's BrokerHost), the records (the lease journal
// behind the core's LeaseRecords) and the core, each whole from its
// constructor, wired in the one order that works. main() builds it over the
// real probe, reaper and census; the tests, the fuzzer and the benchmarks
// build the same one over probes, reapers and clocks of their own.
//
// It adds no logic: start-up's restore and the server's group commit are
// the two places where durable and the core meet, and both are written
// here once (durable never calls the core).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "durable/durable_leases.h"
#include "core/lease_core.h"
#include "durable/lease_journal.h"
#include "host/linux_host.h"

namespace xpra_broker {

// What differs between the daemon and a test: the host's parts, and the
// journal (null: journal=no, nothing recorded).
struct AssemblyParts {
  LinuxHost::Parts host;
  LeaseJournal* journal = nullptr;
  // The server's group commit: records made while a request is answered
  // wait for commit(). Off, every record is written before the handler
  // returns.
  bool group_commit = false;
  // Start-up findings, shown to admins in `status`.
  std::vector<std::string> warnings;
};

class BrokerAssembly {
 public:
  BrokerAssembly(const BrokerConfig& config, AccessPolicy policy, AssemblyParts parts);
  // The core holds references to the host and records next to it: never moved.
  BrokerAssembly(BrokerAssembly&&) = delete;

  LinuxHost& host() { return host_; }
  LeaseCore& core() { return core_; }
  const LeaseCore& core() const { return core_; }
  // Null without a journal.
  DurableLeases* durable() { return durable_.get(); }
  const DurableLeases* durable() const { return durable_.get(); }

  // At start-up: the core takes back what the journal held (leases whose
  // holder is gone are reaped, the others wait `grace` for their holder).
  LeaseCore::RestoreSummary restore(std::chrono::seconds grace);

  // The group commit of one turn, as the server makes it: durable writes
  // the turn's records, the core takes back what could not be written and
  // rewrites the announcing replies in `replies` if the write failed.
  LeaseCore::CommitOutcome commit(const std::vector<v1::Response*>& replies = {});
  bool has_uncommitted() const { return durable_ && durable_->has_uncommitted(); }

 private:
  LinuxHost host_;
  std::unique_ptr<DurableLeases> durable_;
  LeaseCore core_;
};

}  // namespace xpra_broker
