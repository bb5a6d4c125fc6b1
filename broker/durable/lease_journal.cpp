#include "durable/lease_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

namespace xpra_broker {

namespace {

constexpr const char* kFileName = "leases.journal";
constexpr const char* kCompactName = "leases.journal.new";

void put_u32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

std::uint32_t get_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) | u[3];
}

std::uint32_t crc_of(const char* data, std::size_t size) {
  return static_cast<std::uint32_t>(::crc32(0L, reinterpret_cast<const Bytef*>(data), static_cast<uInt>(size)));
}

bool write_all(int fd, const std::string& bytes) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

std::string encode_journal_record(const journal::JournalRecord& record) {
  const std::string body = record.SerializeAsString();
  std::string out;
  out.reserve(8 + body.size());
  put_u32(out, static_cast<std::uint32_t>(body.size()));
  put_u32(out, crc_of(body.data(), body.size()));
  out += body;
  return out;
}

LeaseJournal::LoadResult replay_journal(const std::string& data, std::size_t& valid_bytes) {
  LeaseJournal::LoadResult result;
  // Insertion order is kept so recovered leases come back as they were made.
  std::vector<journal::JournaledLease> ordered;
  std::unordered_map<std::string, std::size_t> index;
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (data.size() - pos < 8) {
      result.problem = "torn record header at offset " + std::to_string(pos);
      break;
    }
    const std::uint32_t size = get_u32(data.data() + pos);
    const std::uint32_t crc = get_u32(data.data() + pos + 4);
    if (size > LeaseJournal::kMaxRecordSize) {
      result.problem = "record length " + std::to_string(size) + " at offset " + std::to_string(pos) + " is too large";
      break;
    }
    if (data.size() - pos - 8 < size) {
      result.problem = "torn record at offset " + std::to_string(pos);
      break;
    }
    const char* body = data.data() + pos + 8;
    journal::JournalRecord record;
    if (crc_of(body, size) != crc || !record.ParseFromArray(body, static_cast<int>(size))) {
      result.problem = "corrupt record at offset " + std::to_string(pos) + " (checksum or format)";
      break;
    }
    pos += 8 + size;
    ++result.records;
    switch (record.change_case()) {
      case journal::JournalRecord::kLeaseAdded: {
        const auto& lease = record.lease_added();
        if (auto it = index.find(lease.id()); it != index.end()) {
          ordered[it->second] = lease;
        } else {
          index.emplace(lease.id(), ordered.size());
          ordered.push_back(lease);
        }
        break;
      }
      case journal::JournalRecord::kLeaseRemoved:
        if (auto it = index.find(record.lease_removed()); it != index.end()) {
          ordered[it->second].clear_id();  // tombstone; filtered below
          index.erase(it);
        }
        break;
      case journal::JournalRecord::kLeaseEnding:
        if (auto it = index.find(record.lease_ending()); it != index.end()) ordered[it->second].set_ending(true);
        break;
      case journal::JournalRecord::kLeaseReattached:
        if (auto it = index.find(record.lease_reattached().lease_id()); it != index.end())
          ordered[it->second].set_holder_pid(record.lease_reattached().holder_pid());
        break;
      case journal::JournalRecord::kLoginSessions:
        if (record.login_sessions().sessions() == 0)
          result.login_sessions.erase(record.login_sessions().uid());
        else
          result.login_sessions[record.login_sessions().uid()] = record.login_sessions().sessions();
        break;
      case journal::JournalRecord::kProcessAdded:
        if (auto it = index.find(record.process_added().lease_id()); it != index.end())
          *ordered[it->second].add_processes() = record.process_added().process();
        break;
      default: break;  // a record kind from a newer broker: skip it
    }
  }
  valid_bytes = pos;
  for (auto& lease : ordered)
    if (!lease.id().empty()) result.leases.push_back(std::move(lease));
  return result;
}

LeaseJournal::LeaseJournal(int runtime_dir_fd, std::string runtime_dir_path)
    : dir_fd_(runtime_dir_fd), path_(std::move(runtime_dir_path) + "/" + kFileName) {
  fd_.reset(::openat(dir_fd_, kFileName, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd_) throw std::runtime_error("cannot open " + path_ + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw std::runtime_error(path_ + " is not a regular file");
  load();
  keeps_reserve_ = true;
  top_up_reserve();
  if (reserved_to_ == 0) {
    reserve_problem_ = std::strerror(errno);
    keeps_reserve_ = false;
  }
}

void LeaseJournal::top_up_reserve() {
  if (!keeps_reserve_ || reserve_left() >= kSpaceReserveBytes / 2) return;
  if (::fallocate(fd_.get(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(bytes_),
                  static_cast<off_t>(kSpaceReserveBytes)) == 0)
    reserved_to_ = bytes_ + kSpaceReserveBytes;
}

void LeaseJournal::load() {
  std::string data;
  char buf[65536];
  for (ssize_t n; (n = ::pread(fd_.get(), buf, sizeof(buf), static_cast<off_t>(data.size()))) > 0;)
    data.append(buf, static_cast<std::size_t>(n));
  std::size_t valid = 0;
  loaded_ = replay_journal(data, valid);
  records_ = loaded_.records;
  bytes_ = valid;
  if (valid < data.size()) {
    loaded_.dropped_bytes = data.size() - valid;
    if (::ftruncate(fd_.get(), static_cast<off_t>(valid)) != 0)
      throw std::runtime_error("cannot truncate the bad tail of " + path_ + ": " + std::strerror(errno));
  }
}

bool LeaseJournal::append(const journal::JournalRecord& record, Kind kind) {
  const Seq seq = next_seq_++;
  queue_.push_back({seq, kind, encode_journal_record(record)});
  last_append_bytes_ = queue_.back().bytes.size();
  if (batching_) {
    batched_ = true;
    return true;
  }
  if (write_queue()) return true;
  // Written at once and refused: a withdrawable record is the caller's to
  // roll back now; an owed one waits for the next write.
  if (kind == Kind::withdrawable)
    std::erase_if(queue_, [seq](const Queued& q) { return q.seq == seq; });
  return false;
}

bool LeaseJournal::living_on_reserve() const {
  if (!keeps_reserve_) return false;
  if (reserve_left() < kSpaceReserveBytes / 2) return true;
  struct statvfs vfs {};
  return ::fstatvfs(fd_.get(), &vfs) == 0 &&
         static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize < kSpaceReserveBytes;
}

std::uint64_t LeaseJournal::queued_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& q : queue_) bytes += q.bytes.size();
  return bytes;
}

bool LeaseJournal::write_queue() {
  if (queue_.empty()) return true;
  std::string bytes;
  for (const auto& q : queue_) bytes += q.bytes;
  struct stat before {};
  const bool sized = ::fstat(fd_.get(), &before) == 0;
  if (!write_all(fd_.get(), bytes)) {
    const int saved = errno;
    // No torn record left behind for the next append to follow: the file
    // ends where it did.
    if (sized) (void)::ftruncate(fd_.get(), before.st_size);
    // Cutting the file back frees what was allocated past its end.
    reserved_to_ = std::min<std::uint64_t>(reserved_to_, bytes_);
    errno = saved;
    last_error_ = saved;
    write_failing_ = true;
    return false;
  }
  records_ += queue_.size();
  bytes_ += bytes.size();
  written_through_ = queue_.back().seq;
  queue_.clear();
  write_failing_ = false;
  top_up_reserve();
  return true;
}

void LeaseJournal::drop_withdrawable(std::vector<Seq>* dropped) {
  std::erase_if(queue_, [dropped](const Queued& q) {
    if (q.kind != Kind::withdrawable) return false;
    if (dropped) dropped->push_back(q.seq);
    return true;
  });
}

LeaseJournal::CommitResult LeaseJournal::commit() {
  CommitResult result;
  batched_ = false;
  if (write_queue()) return result;
  result.ok = false;
  drop_withdrawable(&result.dropped);
  return result;
}

bool LeaseJournal::retry() {
  if (batching_ || queue_.empty()) return queue_.empty();
  // Only owed records can be queued outside a batch: write them.
  return write_queue();
}

bool LeaseJournal::is_written(Seq seq) const {
  if (seq > written_through_) return false;
  for (const auto& q : queue_)
    if (q.seq == seq) return false;
  return true;
}

std::size_t LeaseJournal::owed_records() const {
  std::size_t n = 0;
  for (const auto& q : queue_) n += q.kind == Kind::owed;
  return n;
}

bool LeaseJournal::lease_added(const journal::JournaledLease& lease) {
  journal::JournalRecord record;
  *record.mutable_lease_added() = lease;
  return append(record, Kind::withdrawable);
}

bool LeaseJournal::lease_ending(const std::string& id) {
  journal::JournalRecord record;
  record.set_lease_ending(id);
  return append(record, Kind::owed);
}

bool LeaseJournal::lease_removed(const std::string& id) {
  journal::JournalRecord record;
  record.set_lease_removed(id);
  return append(record, Kind::owed);
}

bool LeaseJournal::process_added(const std::string& lease_id, const journal::JournaledProcess& process) {
  journal::JournalRecord record;
  record.mutable_process_added()->set_lease_id(lease_id);
  *record.mutable_process_added()->mutable_process() = process;
  return append(record, Kind::withdrawable);
}

bool LeaseJournal::lease_reattached(const std::string& lease_id, std::int32_t holder_pid) {
  journal::JournalRecord record;
  record.mutable_lease_reattached()->set_lease_id(lease_id);
  record.mutable_lease_reattached()->set_holder_pid(holder_pid);
  return append(record, Kind::withdrawable);
}

bool LeaseJournal::login_sessions(std::uint32_t uid, std::uint32_t sessions, Kind kind) {
  journal::JournalRecord record;
  record.mutable_login_sessions()->set_uid(uid);
  record.mutable_login_sessions()->set_sessions(sessions);
  return append(record, kind);
}

bool LeaseJournal::compact(const Snapshot& snapshot) {
  std::string data;
  for (const auto& lease : snapshot.leases) {
    journal::JournalRecord record;
    *record.mutable_lease_added() = lease;
    data += encode_journal_record(record);
  }
  for (const auto& [uid, sessions] : snapshot.login_sessions) {
    journal::JournalRecord record;
    record.mutable_login_sessions()->set_uid(uid);
    record.mutable_login_sessions()->set_sessions(sessions);
    data += encode_journal_record(record);
  }
  ::unlinkat(dir_fd_, kCompactName, 0);
  UniqueFd fresh(::openat(dir_fd_, kCompactName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  // The new file's reserve first: no compaction that would leave the
  // journal without one.
  const bool reserved = fresh && (!keeps_reserve_ || ::fallocate(fresh.get(), FALLOC_FL_KEEP_SIZE, 0,
                                                                 static_cast<off_t>(data.size() + kSpaceReserveBytes)) == 0);
  const bool written = reserved && write_all(fresh.get(), data);
  if (!written || ::renameat(dir_fd_, kCompactName, dir_fd_, kFileName) != 0) {
    // Keep appending to the old file; try again on the next occasion (a
    // full disk may have room for the smaller file later, or never: the
    // old file is still whole either way).
    last_error_ = errno;
    if (fresh) ::unlinkat(dir_fd_, kCompactName, 0);
    compaction_failed_ = true;
    return false;
  }
  ::fcntl(fresh.get(), F_SETFL, O_APPEND);
  fd_ = std::move(fresh);
  records_ = snapshot.leases.size() + snapshot.login_sessions.size();
  bytes_ = data.size();
  reserved_to_ = keeps_reserve_ ? bytes_ + kSpaceReserveBytes : 0;
  // Everything queued is in the snapshot: the leases, processes, reattaches
  // and logins it announces are held in memory; the ends it owes are there
  // as the absence of their lease.
  queue_.clear();
  written_through_ = next_seq_ - 1;
  compaction_failed_ = false;
  write_failing_ = false;
  return true;
}

}  // namespace xpra_broker
