#include "daemon/assembly.h"

#include <spdlog/spdlog.h>

namespace xpra_broker {

namespace {

std::unique_ptr<DurableLeases> durable_leases(LeaseJournal* journal, bool group_commit) {
  if (!journal) return nullptr;
  auto durable = std::make_unique<DurableLeases>(*journal);
  durable->set_group_commit(group_commit);
  return durable;
}

}  // namespace

BrokerAssembly::BrokerAssembly(const BrokerConfig& config, AccessPolicy policy, AssemblyParts parts)
    : host_(std::move(parts.host)),
      durable_(durable_leases(parts.journal, parts.group_commit)),
      core_(core_settings(config), std::move(policy), host_, durable_.get()) {
  core_.set_warnings(std::move(parts.warnings));
}

LeaseCore::RestoreSummary BrokerAssembly::restore(std::chrono::seconds grace) {
  if (!durable_) return {};
  const auto recovered = durable_->recovered();
  core_.restore_logins(recovered.login_sessions);
  const auto summary = core_.restore(recovered.leases, grace);
  if (!recovered.leases.empty())
    spdlog::info("lease journal: {} record(s), {} lease(s): {} waiting for their holder, {} being reaped, {} dropped",
                 recovered.records, recovered.leases.size(), summary.waiting, summary.reaping, summary.dropped);
  return summary;
}

LeaseCore::CommitOutcome BrokerAssembly::commit(const std::vector<v1::Response*>& replies) {
  if (!durable_) return {};
  return core_.turn_committed(durable_->commit_turn(), replies);
}

}  // namespace xpra_broker
