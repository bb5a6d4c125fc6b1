// A lease and the processes reported under it: plain data, shared by the
// lease table (lease_table.h) and the records' interface (lease_records.h),
// which is all of the core that durable storage sees.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
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

}  // namespace xpra_broker
