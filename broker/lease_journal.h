// The lease table's journal: every change is appended to
// <runtime-dir>/leases.journal before the reply that announces it is sent, so
// a broker that crashes (kill -9, OOM killer) or is restarted finds every
// lease a client was told about.
//
// Durability: the runtime dir is a tmpfs. A write() into it is in the kernel's
// page cache the moment it returns, and that survives the death of the broker
// process; only a reboot loses it, and a reboot ends every display anyway. So
// records are written with one write() each and never fsync()ed (on tmpfs
// fsync is a no-op; on a disk it would cost milliseconds per lease for
// nothing the design needs).
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
  // request) if the record could not be written.
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

  std::size_t records() const { return records_; }
  static constexpr std::size_t kCompactMinRecords = 1024;
  static constexpr std::uint32_t kMaxRecordSize = 64 * 1024;

 private:
  bool append(const journal::JournalRecord& record);
  void load();

  int dir_fd_;
  std::string path_;
  UniqueFd fd_;
  std::size_t records_ = 0;
  LoadResult loaded_;
};

// Encodes one framed record (length, CRC32, body); exposed for tests.
std::string encode_journal_record(const journal::JournalRecord& record);

// Replays framed records from `data`. Stops at the first torn or corrupt one.
LeaseJournal::LoadResult replay_journal(const std::string& data, std::size_t& valid_bytes);

}  // namespace xpra_broker
