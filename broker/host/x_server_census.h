// X servers on the host, per user: counted by a thread of its own every few
// seconds, so that `status` and the leak watchdog read a snapshot instead of
// walking /proc on the broker's only event-loop thread (89 ms per walk with
// 3,000 processes, and any user may ask for `status`).
//
// The thread only reads /proc; it never raises a capability (capabilities
// are per thread, and CapabilityBracket is only used on the main thread).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/broker_host.h"
#include "host/orphan_watch.h"

namespace xpra_broker {

class XServerCensus {
 public:
  virtual ~XServerCensus() = default;
  // The latest snapshot, or nullptr before the first one.
  virtual std::shared_ptr<const XServerSnapshot> latest() const = 0;
};

// Counts once, on the calling thread (for tests and tools); with `orphans`,
// the orphans of ended leases too.
XServerSnapshot count_x_servers(OrphanWatch* orphans = nullptr);

class BackgroundXServerCensus : public XServerCensus {
 public:
  explicit BackgroundXServerCensus(std::chrono::milliseconds interval, OrphanWatch* orphans = nullptr);
  ~BackgroundXServerCensus() override;  // stops and joins the thread
  BackgroundXServerCensus(const BackgroundXServerCensus&) = delete;
  BackgroundXServerCensus& operator=(const BackgroundXServerCensus&) = delete;

  std::shared_ptr<const XServerSnapshot> latest() const override;

 private:
  void run();

  std::chrono::milliseconds interval_;
  OrphanWatch* orphans_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::shared_ptr<const XServerSnapshot> latest_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace xpra_broker
