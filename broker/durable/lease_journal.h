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
//
// A full disk (docs/durability.md, "The rule"): records come in two kinds.
// A *withdrawable* record announces something the broker can still take
// back (a new lease, a tracked process, a reattach, a login): if its write
// fails it is dropped and the caller rolls its memory back. An *owed* record
// states something that already happened and cannot be undone (a lease's
// end, a logout): if its write fails it stays queued, ahead of everything
// newer, and every later write (or a compaction, which subsumes it) tries
// it again. The caller asks is_written() before it reuses what the record
// frees (a display number).
//
// A space reserve (issue 21): the runtime dir shares its filesystem with
// the users' own directories (<runtime-dir>/<uid>), so any allowed user
// could fill it and make every write above fail: a denial of service for
// everyone. At start-up the journal allocates kSpaceReserveBytes past its
// end (fallocate FALLOC_FL_KEEP_SIZE: the file's size does not change, the
// blocks are its own) and tops that up after writes; appends land in space
// the file already owns, so they cannot fail for lack of space while the
// reserve lasts, however full the filesystem is. A compacted file gets its
// reserve before it is written; while none can be had, compaction waits and
// the old file goes on appending into its reserve (1 MiB: some 3,500
// acquire+release pairs, docs/durability.md). Why not more: every
// compaction allocates a new file's reserve and frees the old one's, and an
// 8 MiB reserve cost 11 ms per compaction on tmpfs (a third more server CPU
// per pair in xpra-broker-bench, which compacts every ~340 pairs). Where
// fallocate is not supported or there is no room at start-up, the journal
// runs without one.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lease_journal.pb.h"
#include "unique_fd.h"

namespace xpra_broker {

namespace journal = ::xpra::broker::journal::v1;

class LeaseJournal {
 public:
  // Every record gets a sequence number, in the order of appending.
  using Seq = std::uint64_t;
  enum class Kind { withdrawable, owed };

  struct LoadResult {
    std::vector<journal::JournaledLease> leases;  // the live leases, in journal order
    std::map<std::uint32_t, std::uint32_t> login_sessions;  // uid -> open login sessions
    std::size_t records = 0;
    std::size_t dropped_bytes = 0;  // a torn or corrupt tail that was cut off
    std::string problem;            // why, when dropped_bytes > 0
  };

  // What the broker holds, for compaction.
  struct Snapshot {
    std::vector<journal::JournaledLease> leases;
    std::map<std::uint32_t, std::uint32_t> login_sessions;
  };

  // Opens (creating, 0600, never through a symlink) the journal in the
  // runtime dir and loads it. Throws std::runtime_error on I/O failure.
  LeaseJournal(int runtime_dir_fd, std::string runtime_dir_path);
  const LoadResult& loaded() const { return loaded_; }

  // Appends one change. While batching, records only queue in memory (true)
  // until commit(). Not batching, they are written at once: false if that
  // failed, and then a withdrawable record is dropped (the caller rolls
  // back) while an owed one stays queued for the next write.
  bool lease_added(const journal::JournaledLease& lease);
  bool process_added(const std::string& lease_id, const journal::JournaledProcess& process);
  bool lease_reattached(const std::string& lease_id, std::int32_t holder_pid);
  bool login_sessions(std::uint32_t uid, std::uint32_t sessions, Kind kind);
  bool lease_ending(const std::string& id);   // owed
  bool lease_removed(const std::string& id);  // owed
  // The sequence number of the record appended last.
  Seq last_seq() const { return next_seq_ - 1; }
  // Has the record with this number reached the file (or a compaction)?
  bool is_written(Seq seq) const;
  // Every record up to this number reached the file, or was dropped; the
  // records still queued (batched, or owed on a full disk) come after it.
  Seq written_through() const { return written_through_; }

  // Rewrites the journal from what the broker holds when it has grown to
  // more than a few times the live leases. `snapshot` is called only then.
  // After a failed compaction (no space for the new file) this does
  // nothing: the broker's periodic retry calls compact() until it works.
  template <typename TakeSnapshot>
  void compact_if_needed(std::size_t live_count, TakeSnapshot&& snapshot) {
    if (compaction_due(live_count)) compact(snapshot());
  }
  // Has the file grown to more than a few times `live_count` leases (and
  // no failed compaction waits for its periodic retry)?
  bool compaction_due(std::size_t live_count) const {
    return !compaction_failed_ && records_ >= kCompactMinRecords && records_ >= 4 * live_count;
  }
  // True if the new file was written and renamed into place.
  bool compact(const Snapshot& snapshot);

  // Group commit: the server batches the records of the requests it
  // answers in one turn of its event loop and writes them with one write()
  // before it sends any of their replies. Records appended while not
  // batching are written at once, after whatever is queued, in order.
  void set_batching(bool on) { batching_ = on; }
  bool has_uncommitted() const { return batched_ && !queue_.empty(); }
  struct CommitResult {
    bool ok = true;
    std::vector<Seq> dropped;  // withdrawable records that were not written
  };
  // Writes what is queued. On failure the withdrawable records are dropped
  // (their requests must be answered with an error and rolled back) and the
  // owed ones stay queued.
  CommitResult commit();
  // Writes the owed records still queued (a periodic retry while the disk
  // is full). True when nothing is owed any more.
  bool retry();

  // Health, for the log and `status`.
  bool degraded() const { return write_failing_ || compaction_failed_; }
  // The last write failed: records are being refused (compaction failing
  // alone refuses nothing).
  bool write_failing() const { return write_failing_; }
  // Bytes allocated past the end of the file (0: no reserve).
  std::uint64_t reserve_left() const { return reserved_to_ > bytes_ ? reserved_to_ - bytes_ : 0; }
  // Appending into the reserve with no way to top it up: the filesystem has
  // less free than a reserve's worth (or the reserve is half gone, which a
  // write tops up whenever it can). One fstatvfs().
  bool living_on_reserve() const;
  // Bytes queued for the next write, and the size of the last record appended.
  std::uint64_t queued_bytes() const;
  std::uint64_t last_append_bytes() const { return last_append_bytes_; }
  // Why no reserve could be made at start-up (empty: it was).
  const std::string& reserve_problem() const { return reserve_problem_; }
  static constexpr std::uint64_t kSpaceReserveBytes = 1u << 20;
  int last_error() const { return last_error_; }
  bool compaction_failed() const { return compaction_failed_; }
  std::size_t owed_records() const;

  std::size_t records() const { return records_; }
  // Size of the file: what was loaded, written and compacted.
  std::uint64_t bytes() const { return bytes_; }
  static constexpr std::size_t kCompactMinRecords = 1024;
  static constexpr std::uint32_t kMaxRecordSize = 64 * 1024;

 private:
  struct Queued {
    Seq seq;
    Kind kind;
    std::string bytes;
  };
  bool append(const journal::JournalRecord& record, Kind kind);
  // Writes the whole queue with one write(); on failure cuts the file back
  // to where it ended, so no torn record is left for the next append.
  bool write_queue();
  void drop_withdrawable(std::vector<Seq>* dropped);
  void load();
  // Allocates kSpaceReserveBytes past the end of the file again once less
  // than half is left (only if the start-up one was had).
  void top_up_reserve();

  int dir_fd_;
  std::string path_;
  UniqueFd fd_;
  std::size_t records_ = 0;
  std::uint64_t bytes_ = 0;
  std::vector<Queued> queue_;  // not yet written, in order
  Seq next_seq_ = 1;
  Seq written_through_ = 0;  // every record up to here was written or dropped, unless still queued
  bool batching_ = false;
  bool batched_ = false;  // records were batched since the last commit()
  bool write_failing_ = false;
  bool compaction_failed_ = false;
  int last_error_ = 0;
  std::uint64_t reserved_to_ = 0;  // the file's space is allocated up to this offset
  bool keeps_reserve_ = false;
  std::string reserve_problem_;
  std::uint64_t last_append_bytes_ = 0;
  LoadResult loaded_;
};

// Encodes one framed record (length, CRC32, body); exposed for tests.
std::string encode_journal_record(const journal::JournalRecord& record);

// Replays framed records from `data`. Stops at the first torn or corrupt one.
LeaseJournal::LoadResult replay_journal(const std::string& data, std::size_t& valid_bytes);

}  // namespace xpra_broker
