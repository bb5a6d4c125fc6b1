// The lease table's journal: every change is appended to
// <runtime-dir>/leases.journal before the reply that announces it is sent, so
// a broker that crashes (kill -9, OOM killer) or is restarted finds every
// lease a client was told about.
//
// Durability: the runtime dir is a tmpfs. A write() into it is in the kernel's
// page cache the moment it returns, and that survives the death of the broker
// process; only a reboot loses it, and a reboot ends every display anyway. So
// records are never fsync()ed (on tmpfs fsync is a no-op; on a disk it would
// cost milliseconds per lease for nothing the design needs). The server
// commits the records of all requests it answered in one turn of its event
// loop with one write(), before any of those replies is sent (group commit);
// a failed commit withdraws the leases it carried and answers INTERNAL.
//
// Integrity: each record carries its length and a CRC32 of its body. Loading
// stops at the first record that is torn (length past the end) or corrupt
// (CRC mismatch, unparsable), logs what was dropped, and truncates the file
// there, so a bad tail is never trusted and never grows.
//
// Compaction: when the file holds far more records than live leases, it is
// rewritten as one record per live lease into a new file that is renamed over
// the old one (atomic: a crash leaves either file, never a mix).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lease_journal.pb.h"
#include "unique_fd.h"

namespace xpra_broker {

namespace journal = ::xpra::broker::journal::v1;

class LeaseJournal {
 public:
  struct LoadResult {
    std::vector<journal::JournaledLease> leases;  // the live leases, in journal order
    std::size_t records = 0;
    std::size_t dropped_bytes = 0;  // a torn or corrupt tail that was cut off
    std::string problem;            // why, when dropped_bytes > 0
  };

  // Opens (creating, 0600, never through a symlink) the journal in the
  // runtime dir and loads it. Throws std::runtime_error on I/O failure.
  LeaseJournal(int runtime_dir_fd, std::string runtime_dir_path);
  const LoadResult& loaded() const { return loaded_; }

  // Appends one change. Returns false (and the caller must refuse the
  // request) if the record could not be written. While batching, records
  // only collect in memory (and these return true) until commit().
  bool lease_added(const journal::JournaledLease& lease);
  bool lease_ending(const std::string& id);
  bool lease_removed(const std::string& id);
  bool process_added(const std::string& lease_id, const journal::JournaledProcess& process);

  // Rewrites the journal from the live leases when it has grown to more than
  // a few times their number. `live` is called only when compaction runs.
  template <typename LiveLeases>
  void compact_if_needed(std::size_t live_count, LiveLeases&& live) {
    if (records_ < kCompactMinRecords || records_ < 4 * live_count) return;
    compact(live());
  }
  void compact(const std::vector<journal::JournaledLease>& live);

  // Group commit: the server batches the records of the requests it
  // answers in one turn of its event loop and writes them with one write()
  // before it sends any of their replies. Records appended while not
  // batching are written at once, after whatever is pending, in order.
  void set_batching(bool on) { batching_ = on; }
  bool has_uncommitted() const { return !pending_.empty() || lost_batched_; }
  // Writes what is pending. False if that failed, or if an earlier write
  // since the last commit lost batched records: the requests that made them
  // must not be told they succeeded.
  bool commit();

  std::size_t records() const { return records_; }
  static constexpr std::size_t kCompactMinRecords = 1024;
  static constexpr std::uint32_t kMaxRecordSize = 64 * 1024;

 private:
  bool append(const journal::JournalRecord& record);
  bool write_pending();
  void load();

  int dir_fd_;
  std::string path_;
  UniqueFd fd_;
  std::size_t records_ = 0;
  std::string pending_;  // encoded records not yet written
  std::size_t pending_records_ = 0;
  bool batching_ = false;
  bool pending_batched_ = false;  // pending_ holds records of batched requests
  bool lost_batched_ = false;     // a write since the last commit lost some
  LoadResult loaded_;
};

// Encodes one framed record (length, CRC32, body); exposed for tests.
std::string encode_journal_record(const journal::JournalRecord& record);

// Replays framed records from `data`. Stops at the first torn or corrupt one.
LeaseJournal::LoadResult replay_journal(const std::string& data, std::size_t& valid_bytes);

}  // namespace xpra_broker
