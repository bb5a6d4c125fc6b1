#include "host/x_server_census.h"

#include "host/process_inspector.h"

namespace xpra_broker {

XServerSnapshot count_x_servers(OrphanWatch* orphans) {
  XServerSnapshot s;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& p : list_x_servers()) s.by_uid[p.uid].push_back(p.pid);
  if (orphans) {
    auto counted = orphans->count();
    s.orphans_by_uid = std::move(counted.by_uid);
    s.orphans_seen_total = counted.seen_total;
  }
  s.taken_at = std::chrono::steady_clock::now();
  s.took = std::chrono::duration_cast<std::chrono::milliseconds>(s.taken_at - start);
  return s;
}

BackgroundXServerCensus::BackgroundXServerCensus(std::chrono::milliseconds interval, OrphanWatch* orphans)
    // The first count is taken at once, so start-up checks have one.
    : interval_(interval), orphans_(orphans),
      latest_(std::make_shared<const XServerSnapshot>(count_x_servers(orphans))),
      thread_([this] { run(); }) {}

BackgroundXServerCensus::~BackgroundXServerCensus() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::shared_ptr<const XServerSnapshot> BackgroundXServerCensus::latest() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return latest_;
}

void BackgroundXServerCensus::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, interval_, [this] { return stopping_; })) {
    lock.unlock();
    auto snapshot = std::make_shared<const XServerSnapshot>(count_x_servers(orphans_));
    lock.lock();
    latest_ = std::move(snapshot);
  }
}

}  // namespace xpra_broker
