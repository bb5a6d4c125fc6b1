// libFuzzer target: the broker core (broker/core/lease_core.h on the real host, daemon/assembly.h) driven through
// its public API, the way the server drives it, by a sequence of steps read
// from the input:
//
//   request      a caller from a fixed set (root, alice and bob in
//                allowed-groups, eve outside it) sends a Request parsed from
//                the input on one of its connections; lease ids, reattach
//                tokens, displays and pids can be patched to ones the broker
//                handed out, so the fuzzer reaches past NOT_FOUND
//   close        a connection goes away (connection_closed)
//   clock        the broker's steady clock moves on
//   reap         the fake reaper finishes the reaps it holds
//   plant        a lock file, socket or symlink appears on a display, owned
//                by one of the callers (what a hostile user can do to /tmp)
//   repeat       the last few steps again, many times (floods)
//
// After every step it checks what must always hold: no reply above the frame
// limit, no user sees another user's lease or X servers, no user above
// max-leases-per-user, the host above max-leases, a lease outside the range;
// and at the end, with every connection closed and every reap done, no lease.
//
// The host it touches is private: the X11 dir, the Xpra dir and the runtime
// dir are temporary directories, the display range is one no test uses, and
// the reaper is a fake that never signals anything.
//
// Input layout: FuzzedDataProvider (integers from the end, request bytes from
// the front); fuzz/make_corpus.cpp writes seeds in the same layout.
// FUZZ_TRACE=1 prints each step and reply.
#include <fcntl.h>
#include <sys/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "daemon/assembly.h"
#include "framing.h"
#include "host/lease_reaper.h"
#include "host/stale_artifact_cleaner.h"
#include "host/user_directories.h"
#include "fuzz_steps.h"

using namespace xpra_broker;
using namespace xpra_broker::fuzz;

namespace {

constexpr gid_t kUsersGroup = 5000;
constexpr gid_t kAdminGroup = 5001;
constexpr std::uint32_t kMaxLeasesPerUser = 3;
constexpr std::uint32_t kMaxLeases = 8;
constexpr std::size_t kMaxSteps = 4000;  // repeats included

Caller make_caller(uid_t uid, gid_t gid, std::vector<gid_t> groups) {
  Caller c;
  c.uid = uid;
  c.gid = gid;
  c.pid = 30000 + static_cast<pid_t>(uid % 10000);
  c.groups = std::move(groups);
  return c;
}

const Caller kCallers[kCallerCount] = {
    make_caller(0, 0, {}),                      // root: admin, the only one for open/close_login
    make_caller(64001, kUsersGroup, {}),        // alice: allowed by her primary group
    make_caller(64002, 64002, {kUsersGroup}),   // bob: allowed by a supplementary group
    make_caller(64003, 64003, {}),              // eve: outside allowed-groups
};

bool trace() {
  static const bool on = std::getenv("FUZZ_TRACE") != nullptr;
  return on;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "request_handler_fuzzer: invariant broken: %s\n", what.c_str());
  std::abort();
}

// Holds reaps until a `reap` step finishes them; never signals anything.
class HeldReaper : public LeaseReaper {
 public:
  struct Job {
    ReapJob job;
    std::function<void(ReapOutcome)> done;
  };
  void reap(ReapJob job, std::function<void(ReapOutcome)> done) override {
    jobs_.push_back({std::move(job), std::move(done)});
  }
  bool nothing_to_reap(const ReapJob& job) const override { return job.processes.empty() && quick_; }
  void set_quick(bool quick) { quick_ = quick; }
  // done() may start more reaps (it does not today): take the list first.
  void finish_all(bool unkillable) {
    auto jobs = std::move(jobs_);
    jobs_.clear();
    for (auto& j : jobs) {
      ReapOutcome outcome;
      outcome.terminated = j.job.processes.size();
      outcome.unkillable = unkillable ? 1 : 0;
      j.done(outcome);
    }
  }
  std::size_t pending() const { return jobs_.size(); }

 private:
  std::vector<Job> jobs_;
  bool quick_ = false;
};

// Private stand-ins for /tmp, /run/xpra; made once per process.
struct FuzzHost {
  std::string root, x11, runtime;
  FuzzHost() {
    std::string pattern = (std::filesystem::temp_directory_path() / "xpra-broker-fuzz-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) fail("mkdtemp");
    root = pattern;
    x11 = root + "/tmp";
    runtime = root + "/run";
    std::filesystem::create_directories(x11 + "/.X11-unix");
    std::filesystem::permissions(x11, std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
    std::filesystem::permissions(x11 + "/.X11-unix", std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
    std::filesystem::create_directories(runtime);
  }
  ~FuzzHost() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
  // What one input left behind goes before the next one starts.
  void reset() {
    std::error_code ec;
    for (const auto& dir : {x11, x11 + "/.X11-unix", runtime})
      for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
        if (entry.path().filename() != ".X11-unix") std::filesystem::remove_all(entry.path(), ec);
  }
};

FuzzHost* host = nullptr;

// privileged_ops lowers each capability after the call it brackets; the
// planting below and the next input's directories need them back.
void restore_effective_capabilities() {
  cap_t caps = cap_get_proc();
  if (!caps) return;
  for (cap_value_t cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (!CAP_IS_SUPPORTED(cap)) continue;
    cap_flag_value_t permitted = CAP_CLEAR;
    if (cap_get_flag(caps, cap, CAP_PERMITTED, &permitted) == 0 && permitted == CAP_SET)
      cap_set_flag(caps, CAP_EFFECTIVE, 1, &cap, CAP_SET);
  }
  cap_set_proc(caps);
  cap_free(caps);
}

void plant(const PlantStep& p, std::uint32_t display_first) {
  const std::string n = std::to_string(display_first + p.display_offset);
  const uid_t owner = kCallers[p.owner].uid;
  std::string path;
  switch (p.kind) {
    case PlantKind::lock_file: path = host->x11 + "/.X" + n + "-lock"; break;
    case PlantKind::x11_file: path = host->x11 + "/.X11-unix/X" + n; break;
    case PlantKind::x11_socket: path = host->x11 + "/.X11-unix/X" + n; break;
    case PlantKind::lock_symlink: path = host->x11 + "/.X" + n + "-lock"; break;
  }
  ::unlink(path.c_str());
  if (p.kind == PlantKind::lock_symlink) {
    (void)::symlink(p.content.empty() ? "/etc/passwd" : p.content.c_str(), path.c_str());
    (void)::lchown(path.c_str(), owner, owner);
    return;
  }
  if (p.kind == PlantKind::x11_socket) {
    // Bound, never listened on: a stale socket.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd >= 0 && path.size() < sizeof(addr.sun_path)) {
      std::memcpy(addr.sun_path, path.c_str(), path.size());
      (void)::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    }
    if (fd >= 0) ::close(fd);
    (void)::lchown(path.c_str(), owner, owner);
    return;
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
  if (fd < 0) return;
  (void)!::write(fd, p.content.data(), p.content.size());
  (void)::fchown(fd, owner, owner);
  ::close(fd);
}

struct KnownLease {
  std::string id, token;
  std::uint32_t display = 0;
};

class Run {
 public:
  Run(const BrokerConfig& config, AccessPolicy policy)
      : config_(config), cleaner_(host->x11, host->runtime, "fuzz-host") {
    UniqueFd dir(::open(host->runtime.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) fail("cannot open the runtime dir");
    AssemblyParts parts;
    parts.host.probe = std::make_unique<DisplayProbe>(host->x11, host->runtime, "fuzz-host");
    parts.host.user_dirs = std::make_unique<UserDirectories>(std::move(dir), host->runtime, ::getegid());
    parts.host.clock = [this] { return now_; };
    parts.host.reaper = &reaper_;
    parts.host.cleaner = &cleaner_;
    broker_ = std::make_unique<BrokerAssembly>(config, std::move(policy), std::move(parts));
    for (std::size_t i = 0; i < kCallerCount; ++i)
      for (std::size_t j = 0; j < kSlotsPerCaller; ++j) connection_[i][j] = next_connection_++;
  }

  ~Run() {
    // Whatever is still held ends, as it does when the server shuts down.
    for (std::size_t i = 0; i < kCallerCount; ++i)
      for (std::size_t j = 0; j < kSlotsPerCaller; ++j) broker_->core().connection_closed(connection_[i][j]);
    reaper_.finish_all(false);
    // Every lease here belongs to a connection: none may outlive them all.
    if (broker_->core().leases().size() != 0) fail("a lease outlived every connection and its reap");
    if (reaper_.pending() != 0) fail("a reap was started after every lease ended");
  }

  void execute(const Step& step) {
    switch (step.kind) {
      case StepKind::request: return request(step.request);
      case StepKind::close: {
        ConnectionId& id = connection_[step.caller][step.slot];
        if (trace()) std::fprintf(stderr, "close caller=%zu conn=%llu\n", step.caller, (unsigned long long)id);
        broker_->core().connection_closed(id);
        id = next_connection_++;  // the server never reuses an id
        break;
      }
      case StepKind::clock: now_ += std::chrono::milliseconds(step.amount); break;
      case StepKind::reap:
        reaper_.set_quick(step.flag);
        reaper_.finish_all(step.amount != 0);
        break;
      case StepKind::plant: plant(step.plant, config_.display_first); break;
      case StepKind::repeat: break;  // expanded by the caller
    }
    check_table();
  }

 private:
  void request(const RequestStep& r) {
    v1::Request req;
    // What the server does with a frame that does not parse or has no verb:
    // close the connection without calling the broker.
    if (!req.ParseFromString(r.body) || req.verb_case() == v1::Request::VERB_NOT_SET) return;
    patch(req, r);
    const Caller& caller = kCallers[r.caller];
    const ConnectionId conn = connection_[r.caller][r.slot];
    broker_->core().set_connection_count(kCallerCount * kSlotsPerCaller);
    const v1::Response resp = broker_->core().handle(caller, conn, req);
    if (trace())
      std::fprintf(stderr, "caller=%zu conn=%llu %s -> %s %s\n", r.caller, (unsigned long long)conn,
                   req.ShortDebugString().c_str(), v1::Status_Name(resp.status()).c_str(),
                   resp.ShortDebugString().substr(0, 300).c_str());
    check_reply(caller, req, resp);
    if (resp.status() == v1::OK && resp.has_acquire()) {
      known_.push_back({resp.acquire().lease().id(), resp.acquire().reattach_token(), resp.acquire().lease().display()});
      if (known_.size() > 32) known_.erase(known_.begin());
    }
  }

  // Points the request at something the broker handed out, counted from the
  // most recent lease, so that a repeated acquire + report names the new one.
  void patch(v1::Request& req, const RequestStep& r) {
    if (known_.empty() && !(r.patch & kPatchOwnPid)) return;
    const KnownLease* k = known_.empty() ? nullptr : &known_[known_.size() - 1 - (r.lease_index % known_.size())];
    if (k && (r.patch & kPatchLeaseId)) {
      switch (req.verb_case()) {
        case v1::Request::kRelease: req.mutable_release()->set_lease_id(k->id); break;
        case v1::Request::kReportProcess: req.mutable_report_process()->set_lease_id(k->id); break;
        case v1::Request::kReportStartFailure: req.mutable_report_start_failure()->set_lease_id(k->id); break;
        case v1::Request::kReattach: req.mutable_reattach()->set_lease_id(k->id); break;
        default: break;
      }
    }
    if (k && (r.patch & kPatchToken) && req.has_reattach()) req.mutable_reattach()->set_reattach_token(k->token);
    if (k && (r.patch & kPatchDisplay) && req.has_release()) req.mutable_release()->set_display(k->display);
    if ((r.patch & kPatchOwnPid) && req.has_report_process()) req.mutable_report_process()->set_pid(::getpid());
    if ((r.patch & kPatchLoginUid)) {
      const uid_t uid = kCallers[r.lease_index % kCallerCount].uid;
      if (req.has_open_login()) req.mutable_open_login()->set_uid(uid);
      if (req.has_close_login()) req.mutable_close_login()->set_uid(uid);
    }
  }

  void check_reply(const Caller& caller, const v1::Request& req, const v1::Response& resp) {
    if (resp.status() == v1::STATUS_UNSPECIFIED) fail("reply without a status");
    const std::size_t size = resp.ByteSizeLong();
    if (size > wire::kMaxFrameSize)
      fail("reply of " + std::to_string(size) + " bytes to " + req.ShortDebugString().substr(0, 200) +
           " exceeds the frame limit");
    if (!wire::encode_frame(resp)) fail("reply does not encode as a frame");

    const bool admin = caller.is_root();  // nobody else is in admin-groups here
    auto own = [&](const v1::Lease& lease, const char* where) {
      if (!admin && lease.uid() != caller.uid)
        fail(std::string(where) + " shows uid " + std::to_string(caller.uid) + " a lease of uid " +
             std::to_string(lease.uid()));
    };
    if (resp.has_list())
      for (const auto& lease : resp.list().leases()) own(lease, "list");
    if (resp.has_acquire()) own(resp.acquire().lease(), "acquire");
    if (resp.has_release()) own(resp.release().lease(), "release");
    if (resp.has_reattach()) own(resp.reattach().lease(), "reattach");
    if (resp.has_status_reply() && !admin) {
      for (const auto& x : resp.status_reply().x_servers())
        if (x.uid() != caller.uid) fail("status shows a user another user's X servers");
      // Users learn that a number is blocked, never whose it is.
      for (const auto& b : resp.status_reply().blocked())
        if (b.owner_uid() != 0 || b.pid() != 0) fail("status shows a user who blocks :" + std::to_string(b.display()));
    }
    if (resp.status() == v1::OK && !admin && (req.has_open_login() || req.has_close_login()))
      fail("a user other than root opened or closed a login session");
    if (resp.status() == v1::OK && !caller.is_root() && caller.gid != kUsersGroup &&
        std::find(caller.groups.begin(), caller.groups.end(), kUsersGroup) == caller.groups.end() &&
        (req.has_acquire() || req.has_report_process() || req.has_report_start_failure()))
      fail("a user outside allowed-groups was served " + req.ShortDebugString().substr(0, 100));
  }

  void check_table() const {
    const auto& table = broker_->core().leases();
    if (table.size() > config_.max_leases) fail("more leases than max-leases");
    for (const auto& c : kCallers)
      if (table.count_for_uid(c.uid) > config_.max_leases_per_user)
        fail("uid " + std::to_string(c.uid) + " holds more than max-leases-per-user");
    std::uint32_t last = 0;
    for (const Lease* lease : table.all()) {
      if (lease->display < config_.display_first || lease->display > config_.display_last)
        fail("lease outside the display range");
      if (lease->display == last) fail("two leases on one display");
      last = lease->display;
      if (!broker_->core().allocator().is_leased(lease->display)) fail("leased display not taken in the allocator");
    }
  }

  BrokerConfig config_;
  HeldReaper reaper_;
  StaleArtifactCleaner cleaner_;
  std::unique_ptr<BrokerAssembly> broker_;
  SteadyTime now_ = SteadyTime(std::chrono::hours(1000));
  ConnectionId connection_[kCallerCount][kSlotsPerCaller];
  ConnectionId next_connection_ = 1;
  std::vector<KnownLease> known_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  spdlog::set_level(trace() ? spdlog::level::debug : spdlog::level::off);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "request_handler_fuzzer: run as root (it hands directories to test uids, as CI does)\n");
    std::exit(1);
  }
  static FuzzHost h;
  host = &h;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const Scenario scenario = read_scenario(in);

  restore_effective_capabilities();
  host->reset();
  BrokerConfig config;
  config.runtime_dir = host->runtime;
  config.x11_tmp_dir = host->x11;
  // Abstract names (@xpra/N) are host-wide: a range no test and no real
  // server uses. The largest one lets a flood reach the reply size limit.
  config.display_first = 64100;
  config.display_last = config.display_first + kRangeSizes[scenario.range] - 1;
  config.max_leases_per_user = kMaxLeasesPerUser;
  config.max_leases = kMaxLeases;
  config.recheck_seconds = 30;
  config.quarantine_seconds = 300;
  if (scenario.lenient_guard) {
    config.acquire_burst = 100000;
    config.acquires_per_minute = 1000000;
    config.failures_before_backoff = 1000;
  }
  AccessPolicy policy;
  policy.allowed_gids = {kUsersGroup};
  policy.admin_gids = {kAdminGroup};

  Run run(config, policy);
  std::vector<Step> history;
  std::size_t executed = 0;
  while (in.remaining_bytes() > 0 && executed < kMaxSteps) {
    Step step = read_step(in);
    if (step.kind != StepKind::repeat) {
      run.execute(step);
      ++executed;
      history.push_back(std::move(step));
      continue;
    }
    // The last `count` steps, `times` more times.
    const std::size_t count = std::min<std::size_t>(step.slot, history.size());
    for (std::uint32_t t = 0; t < step.amount && executed < kMaxSteps; ++t)
      for (std::size_t i = history.size() - count; i < history.size() && executed < kMaxSteps; ++i, ++executed)
        run.execute(history[i]);
  }
  return 0;
}
