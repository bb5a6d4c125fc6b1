// The lease core's host in memory (core/broker_host.h): a clock the test
// moves, numbered ids, displays and processes the test declares, reaps the
// test finishes, and the log as a list of lines. Nothing here touches the
// machine, so the core's tests run as any user.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/broker_host.h"
#include "core/lease_records.h"

namespace xpra_broker::testing {

class FakeHost final : public BrokerHost {
 public:
  // --- what the test declares ---
  SteadyTime clock = SteadyTime(std::chrono::hours(1));
  std::map<std::uint32_t, DisplayVerdict> displays;     // absent: free
  std::set<std::uint32_t> cleanable;                    // stale ones clean_display() frees
  std::map<std::uint32_t, ConflictEvidence> conflicts;  // what confirm_conflict() finds
  std::map<pid_t, ProcessFacts> processes;              // running processes
  std::shared_ptr<XServerSnapshot> census;
  std::map<uid_t, std::string> dir_errors;  // prepare_user_dir() fails for these uids
  bool reap_everything = false;             // nothing_to_reap() is false for every job

  // --- what the core did ---
  std::vector<LogLine> lines;
  struct PendingReap {
    ReapJob job;
    std::function<void(ReapOutcome)> done;
  };
  std::vector<PendingReap> reaps;
  std::size_t requests = 0;

  void advance(std::chrono::milliseconds by) { clock += by; }
  // Finishes the oldest reap with `outcome`.
  void finish_reap(ReapOutcome outcome = {}) {
    auto reap = std::move(reaps.front());
    reaps.erase(reaps.begin());
    reap.done(outcome);
  }
  void add_process(pid_t pid, uid_t uid) {
    processes[pid] = ProcessFacts{pid, uid, pid, pid, 1000u + pid, "proc", nullptr};
  }
  std::string log_text() const {
    std::string all;
    for (const auto& l : lines) all += format_log_line(l) + "\n";
    return all;
  }

  // --- BrokerHost ---
  SteadyTime now() override { return clock; }
  WallTime wall_now() override { return WallTime(std::chrono::seconds(1'700'000'000)); }
  std::string random_id() override {
    char id[17];
    std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(++ids_));
    return id;
  }
  std::string user_name(uid_t uid) override { return "user" + std::to_string(uid); }
  UserDir prepare_user_dir(uid_t uid) override {
    if (const auto it = dir_errors.find(uid); it != dir_errors.end()) return {false, {}, it->second};
    return {true, "/run/xpra/" + std::to_string(uid), {}};
  }
  void request_started() override { ++requests; }
  void request_finished() override {}
  DisplayVerdict examine_display(std::uint32_t display, const std::string&) override {
    const auto it = displays.find(display);
    return it == displays.end() ? DisplayVerdict{} : it->second;
  }
  std::vector<RemovedArtifact> clean_display(std::uint32_t display, const std::string&) override {
    if (!cleanable.erase(display)) return {};
    displays.erase(display);
    return {RemovedArtifact{"/tmp/.X" + std::to_string(display) + "-lock", 4242, 60, "stale X lock"}};
  }
  std::optional<ConflictEvidence> confirm_conflict(std::uint32_t display, const std::string&, uid_t) override {
    const auto it = conflicts.find(display);
    if (it == conflicts.end()) return std::nullopt;
    return it->second;
  }
  std::optional<ProcessFacts> open_process(pid_t pid) override {
    const auto it = processes.find(pid);
    if (it == processes.end()) return std::nullopt;
    return it->second;
  }
  bool process_alive(pid_t pid) override { return processes.count(pid) > 0; }
  std::shared_ptr<const XServerSnapshot> x_servers() override { return census; }
  void reap(ReapJob job, std::function<void(ReapOutcome)> done) override {
    reaps.push_back({std::move(job), std::move(done)});
  }
  bool nothing_to_reap(const ReapJob& job) override { return !reap_everything && job.processes.empty(); }
  HostReport report() override { return {"testhost", 3, 0, {}}; }
  bool wants_log(LogLevel) override { return true; }
  void log(const LogLine& line) override { lines.push_back(line); }

 private:
  std::uint64_t ids_ = 0;
};

// Lease records in memory: written at once, or refused (a full disk), or
// held unwritten (owed) until the test writes them.
class FakeRecords final : public LeaseRecords {
 public:
  bool refuse = false;               // withdrawable records are refused
  bool hold_owed = false;            // owed records stay unwritten until write_owed()
  std::vector<std::string> journal;  // what was recorded, in order

  // The disk has room again: the next retry() writes what is owed.
  void write_owed() { hold_owed = false; }

  Receipt lease_added(const Lease& l) override { return withdrawable("added " + l.id); }
  Receipt process_added(const Lease& l, const TrackedProcess& p) override {
    return withdrawable("process " + l.id + " " + std::to_string(p.pid));
  }
  Receipt lease_reattached(const Lease& l) override { return withdrawable("reattached " + l.id); }
  Receipt login_opened(uid_t uid, std::uint32_t n) override {
    return withdrawable("login " + std::to_string(uid) + "=" + std::to_string(n));
  }
  Receipt login_closed(uid_t uid, std::uint32_t n) override {
    return owed("login " + std::to_string(uid) + "=" + std::to_string(n));
  }
  Receipt lease_ending(const Lease& l, When) override { return owed("ending " + l.id); }
  Receipt lease_removed(const std::string& id, std::size_t, When) override { return owed("removed " + id); }
  Progress compact(const Snapshot&) override { return progress(); }
  Progress retry() override {
    if (!hold_owed) written_through_ = next_seq_ - 1;
    return progress();
  }
  Health health() const override {
    Health h;
    h.degraded = refuse || owes();
    h.error = "No space left on device";
    if (h.degraded) h.problem = "cannot be written: " + h.error;
    h.owed_records = next_seq_ - 1 - written_through_;
    return h;
  }

 private:
  bool owes() const { return written_through_ < next_seq_ - 1; }
  Progress progress() const {
    Progress p;
    p.written_through = written_through_;
    p.write_failing = refuse || owes();
    p.owes_records = owes();
    return p;
  }
  Receipt withdrawable(std::string what) {
    if (refuse) return {next_seq_, true, progress()};
    journal.push_back(std::move(what));
    written_through_ = next_seq_++;
    return {written_through_, false, progress()};
  }
  Receipt owed(std::string what) {
    journal.push_back(std::move(what));
    const Seq seq = next_seq_++;
    if (!hold_owed) written_through_ = seq;
    return {seq, hold_owed, progress()};
  }
  Seq next_seq_ = 1;
  Seq written_through_ = 0;
};

}  // namespace xpra_broker::testing
