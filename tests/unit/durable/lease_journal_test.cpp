// broker/durable/lease_journal.h and the durable-lease paths (durable_leases.h, the core):
//
// - the record codec and replay_journal() on bytes in memory: round trip,
//   the live set after add/remove/process records, a torn tail cut at every
//   length, a flipped byte anywhere in the last record, an oversized length;
// - LeaseJournal on a temporary runtime dir: the bad tail is cut on open and
//   appends go after it, compaction keeps the live leases only and leaves no
//   leases.journal.new behind, no symlink is ever followed, mode 0600;
// - BrokerAssembly::restore() / expire_detached() / reattach with a fake probe
//   and a clock the test moves, and a broker "restarted" from the journal a
//   first broker wrote.
//
// Runs as root (like CI): acquire hands per-user directories to made-up uids.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/assembly.h"
#include "durable/lease_journal.h"
#include "host/process_inspector.h"
#include "test_support.h"

namespace xpra_broker {
namespace {

using std::chrono::seconds;
using testing::Contains;
using testing::TempDir;

constexpr const char* kJournalName = "leases.journal";
constexpr const char* kCompactName = "leases.journal.new";

// ---------------------------------------------------------------- records

journal::JournaledLease make_lease(const std::string& id, std::uint32_t display, uid_t uid = 4001,
                                   pid_t holder = 1234) {
  journal::JournaledLease l;
  l.set_id(id);
  l.set_display(display);
  l.set_uid(uid);
  l.set_gid(uid);
  l.set_holder_pid(holder);
  l.set_holder_start_time(777);
  l.set_user("user" + std::to_string(uid));
  l.set_runtime_dir("/run/xpra/" + std::to_string(uid));
  l.set_purpose("purpose of " + id);
  l.set_acquired_unix_ms(1700000000000 + display);
  l.set_reattach_token("token-" + id + "-0123456789abcdef");
  return l;
}

journal::JournaledProcess make_process(pid_t pid, int role = 1) {
  journal::JournaledProcess p;
  p.set_pid(pid);
  p.set_role(role);
  p.set_group_leader(pid);
  p.set_session_leader(0);
  p.set_start_time(1000 + static_cast<std::uint64_t>(pid));
  return p;
}

journal::JournalRecord added(const journal::JournaledLease& lease) {
  journal::JournalRecord r;
  *r.mutable_lease_added() = lease;
  return r;
}

journal::JournalRecord removed(const std::string& id) {
  journal::JournalRecord r;
  r.set_lease_removed(id);
  return r;
}

journal::JournalRecord process_added(const std::string& lease_id, const journal::JournaledProcess& p) {
  journal::JournalRecord r;
  r.mutable_process_added()->set_lease_id(lease_id);
  *r.mutable_process_added()->mutable_process() = p;
  return r;
}

std::string encode_all(const std::vector<journal::JournalRecord>& records) {
  std::string out;
  for (const auto& r : records) out += encode_journal_record(r);
  return out;
}

// Where each record starts, plus the end: boundaries[k] = bytes of the first k records.
std::vector<std::size_t> boundaries_of(const std::vector<journal::JournalRecord>& records) {
  std::vector<std::size_t> b{0};
  for (const auto& r : records) b.push_back(b.back() + encode_journal_record(r).size());
  return b;
}

// The live set after the first k records, computed without the code under
// test: a plain ordered model.
std::vector<journal::JournaledLease> model_live(const std::vector<journal::JournalRecord>& records, std::size_t k) {
  std::vector<journal::JournaledLease> live;
  for (std::size_t i = 0; i < k; ++i) {
    const auto& r = records[i];
    auto find = [&](const std::string& id) {
      return std::find_if(live.begin(), live.end(), [&](const auto& l) { return l.id() == id; });
    };
    if (r.has_lease_added()) {
      if (auto it = find(r.lease_added().id()); it != live.end())
        *it = r.lease_added();
      else
        live.push_back(r.lease_added());
    } else if (r.change_case() == journal::JournalRecord::kLeaseRemoved) {
      if (auto it = find(r.lease_removed()); it != live.end()) live.erase(it);
    } else if (r.has_process_added()) {
      if (auto it = find(r.process_added().lease_id()); it != live.end())
        *it->add_processes() = r.process_added().process();
    }
  }
  return live;
}

std::vector<std::string> ids_of(const std::vector<journal::JournaledLease>& leases) {
  std::vector<std::string> ids;
  for (const auto& l : leases) ids.push_back(l.id());
  return ids;
}

// Byte-exact comparison of two lease lists (every field, processes included).
::testing::AssertionResult same_leases(const std::vector<journal::JournaledLease>& actual,
                                       const std::vector<journal::JournaledLease>& expected) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << actual.size() << " leases, expected " << expected.size();
  for (std::size_t i = 0; i < actual.size(); ++i)
    if (actual[i].SerializeAsString() != expected[i].SerializeAsString())
      return ::testing::AssertionFailure() << "lease #" << i << " differs:\n"
                                           << actual[i].DebugString() << "expected:\n"
                                           << expected[i].DebugString();
  return ::testing::AssertionSuccess();
}

// A journal with every kind of record, several leases, processes and a
// removal, so that each prefix has a different live set.
std::vector<journal::JournalRecord> sample_records() {
  return {
      added(make_lease("aaaa", 100)),
      added(make_lease("bbbb", 101, 4002)),
      process_added("aaaa", make_process(3001)),
      added(make_lease("cccc", 102)),
      removed("bbbb"),
      process_added("cccc", make_process(3002, 2)),
      added(make_lease("dddd", 103, 4003)),
      removed("aaaa"),
      process_added("dddd", make_process(3003)),
  };
}

// ---------------------------------------------------------------- replay

TEST(LeaseJournalReplayTest, EncodeThenReplayGivesBackEveryField) {
  auto lease = make_lease("0123456789abcdef", 4242, 4001, 5555);
  *lease.add_processes() = make_process(100);
  *lease.add_processes() = make_process(101, 2);
  const std::string bytes = encode_journal_record(added(lease));

  // Frame: u32 BE length, u32 BE crc32, body.
  ASSERT_GT(bytes.size(), 8u);
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint32_t length = (std::uint32_t{u[0]} << 24) | (u[1] << 16) | (u[2] << 8) | u[3];
  EXPECT_EQ(length, bytes.size() - 8);

  std::size_t valid = 12345;
  const auto result = replay_journal(bytes, valid);
  EXPECT_EQ(valid, bytes.size());
  EXPECT_EQ(result.records, 1u);
  EXPECT_TRUE(result.problem.empty()) << result.problem;
  EXPECT_TRUE(same_leases(result.leases, {lease}));
}

TEST(LeaseJournalReplayTest, EmptyInputIsAnEmptyJournal) {
  std::size_t valid = 99;
  const auto result = replay_journal("", valid);
  EXPECT_EQ(valid, 0u);
  EXPECT_EQ(result.records, 0u);
  EXPECT_TRUE(result.leases.empty());
  EXPECT_TRUE(result.problem.empty());
}

TEST(LeaseJournalReplayTest, AddRemoveAndProcessRecordsReplayToTheLiveSetInInsertionOrder) {
  const std::vector<journal::JournalRecord> records = {
      added(make_lease("A", 100)),
      added(make_lease("B", 101)),
      added(make_lease("C", 102)),
      process_added("B", make_process(11)),
      removed("A"),
      added(make_lease("D", 103)),
      process_added("D", make_process(12)),
      process_added("D", make_process(13, 2)),
      process_added("A", make_process(14)),  // of a removed lease: ignored
      removed("no-such-lease"),              // ignored
      added(make_lease("A", 104)),           // the id again, after its removal: a new entry at the end
      added(make_lease("C", 105)),           // a full entry for a live id replaces it in place
  };
  std::size_t valid = 0;
  const auto result = replay_journal(encode_all(records), valid);
  EXPECT_EQ(result.records, records.size());
  EXPECT_TRUE(result.problem.empty()) << result.problem;
  EXPECT_EQ(ids_of(result.leases), (std::vector<std::string>{"B", "C", "D", "A"}));
  EXPECT_TRUE(same_leases(result.leases, model_live(records, records.size())));
  ASSERT_EQ(result.leases.size(), 4u);
  EXPECT_EQ(result.leases[0].processes_size(), 1);
  EXPECT_EQ(result.leases[0].processes(0).pid(), 11);
  EXPECT_EQ(result.leases[1].display(), 105u);
  EXPECT_EQ(result.leases[2].processes_size(), 2);
  EXPECT_EQ(result.leases[3].display(), 104u);
  EXPECT_EQ(result.leases[3].processes_size(), 0) << "a removed lease's processes do not come back with its id";
}

TEST(LeaseJournalReplayTest, ARecordKindFromANewerBrokerIsSkipped) {
  // An empty JournalRecord (no oneof case set) stands for an unknown kind.
  const std::vector<journal::JournalRecord> records = {added(make_lease("A", 100)), journal::JournalRecord(),
                                                       added(make_lease("B", 101))};
  std::size_t valid = 0;
  const std::string bytes = encode_all(records);
  const auto result = replay_journal(bytes, valid);
  EXPECT_EQ(valid, bytes.size());
  EXPECT_EQ(result.records, 3u);
  EXPECT_EQ(ids_of(result.leases), (std::vector<std::string>{"A", "B"}));
}

TEST(LeaseJournalReplayTest, ATornTailAtEveryLengthLoadsTheValidPrefix) {
  const auto records = sample_records();
  const std::string bytes = encode_all(records);
  const auto boundaries = boundaries_of(records);
  ASSERT_EQ(boundaries.back(), bytes.size());
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(bytes.size()) + " bytes");
    // The last whole record before the cut.
    const std::size_t whole =
        static_cast<std::size_t>(std::upper_bound(boundaries.begin(), boundaries.end(), cut) - boundaries.begin()) - 1;
    std::size_t valid = 0;
    const auto result = replay_journal(bytes.substr(0, cut), valid);
    EXPECT_EQ(valid, boundaries[whole]);
    EXPECT_EQ(result.records, whole);
    EXPECT_TRUE(same_leases(result.leases, model_live(records, whole)));
    if (cut == boundaries[whole]) {
      EXPECT_TRUE(result.problem.empty()) << result.problem;
    } else {
      EXPECT_TRUE(Contains(result.problem, "torn"));
      EXPECT_TRUE(Contains(result.problem, "offset " + std::to_string(boundaries[whole])));
    }
  }
}

TEST(LeaseJournalReplayTest, AFlippedByteAnywhereInTheLastRecordDropsThatRecord) {
  const auto records = sample_records();
  const std::string bytes = encode_all(records);
  const auto boundaries = boundaries_of(records);
  const std::size_t last = boundaries[records.size() - 1];
  const auto expected = model_live(records, records.size() - 1);
  for (std::size_t pos = last; pos < bytes.size(); ++pos) {
    for (unsigned char mask : {0x01, 0x10, 0x80, 0xff}) {
      SCOPED_TRACE("byte " + std::to_string(pos - last) + " of the last record ^ " + std::to_string(mask));
      std::string bad = bytes;
      bad[pos] = static_cast<char>(bad[pos] ^ mask);
      std::size_t valid = 0;
      const auto result = replay_journal(bad, valid);
      EXPECT_EQ(valid, last);
      EXPECT_EQ(result.records, records.size() - 1);
      EXPECT_TRUE(same_leases(result.leases, expected));
      EXPECT_FALSE(result.problem.empty());
      if (pos >= last + 4) {
        EXPECT_TRUE(Contains(result.problem, "corrupt")) << "the CRC or the body was hit";
      }
    }
  }
}

TEST(LeaseJournalReplayTest, AFlippedByteInAnEarlierRecordStopsThereAndDropsTheRest) {
  const auto records = sample_records();
  const std::string bytes = encode_all(records);
  const auto boundaries = boundaries_of(records);
  // A byte in the body of the third record.
  std::string bad = bytes;
  bad[boundaries[2] + 10] ^= 0x40;
  std::size_t valid = 0;
  const auto result = replay_journal(bad, valid);
  EXPECT_EQ(valid, boundaries[2]);
  EXPECT_EQ(result.records, 2u);
  EXPECT_TRUE(same_leases(result.leases, model_live(records, 2)));
  EXPECT_TRUE(Contains(result.problem, "corrupt record at offset " + std::to_string(boundaries[2])));
}

TEST(LeaseJournalReplayTest, AValidCrcOverAnUnparsableBodyIsCorrupt) {
  const std::string prefix = encode_journal_record(added(make_lease("A", 100)));
  // A body that is no JournalRecord (field 1 as a varint where a message is
  // expected, then a truncated varint), framed with its correct CRC.
  const std::string body("\x08\xff\xff", 3);
  const std::uint32_t crc = static_cast<std::uint32_t>(::crc32(0L, reinterpret_cast<const Bytef*>(body.data()), 3));
  std::string frame;
  for (std::uint32_t v : {static_cast<std::uint32_t>(body.size()), crc})
    for (int shift = 24; shift >= 0; shift -= 8) frame.push_back(static_cast<char>(v >> shift));
  frame += body;
  std::size_t valid = 0;
  const auto result = replay_journal(prefix + frame, valid);
  EXPECT_EQ(valid, prefix.size());
  EXPECT_EQ(ids_of(result.leases), std::vector<std::string>{"A"});
  EXPECT_TRUE(Contains(result.problem, "corrupt"));
}

std::string header(std::uint32_t length, std::uint32_t crc) {
  std::string out;
  for (std::uint32_t v : {length, crc})
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
  return out;
}

// A lease_added record whose body is exactly `body_size` bytes.
std::string record_with_body_size(std::size_t body_size) {
  auto lease = make_lease("big", 100);
  lease.set_purpose("");
  const std::size_t base = added(lease).ByteSizeLong();
  // The purpose's own length prefix grows with it; search the size that fits.
  for (std::size_t n = body_size > base + 8 ? body_size - base - 8 : 0; n <= body_size; ++n) {
    lease.set_purpose(std::string(n, 'p'));
    if (added(lease).ByteSizeLong() == body_size) return encode_journal_record(added(lease));
  }
  return {};
}

TEST(LeaseJournalReplayTest, ARecordOfTheMaximumSizeIsAcceptedOneByteMoreIsRefused) {
  const std::string at_limit = record_with_body_size(LeaseJournal::kMaxRecordSize);
  ASSERT_EQ(at_limit.size(), 8 + LeaseJournal::kMaxRecordSize);
  std::size_t valid = 0;
  auto result = replay_journal(at_limit, valid);
  EXPECT_EQ(valid, at_limit.size());
  EXPECT_EQ(result.leases.size(), 1u);

  // One byte more, complete and with a correct CRC: refused on its length
  // alone, before the body is looked at.
  const std::string over = record_with_body_size(LeaseJournal::kMaxRecordSize + 1);
  ASSERT_EQ(over.size(), 8 + LeaseJournal::kMaxRecordSize + 1);
  const std::string prefix = encode_journal_record(added(make_lease("A", 101)));
  result = replay_journal(prefix + over, valid);
  EXPECT_EQ(valid, prefix.size());
  EXPECT_EQ(ids_of(result.leases), std::vector<std::string>{"A"});
  EXPECT_TRUE(Contains(result.problem, "too large"));
}

TEST(LeaseJournalReplayTest, AnOversizedLengthFieldIsRefusedAsTooLargeNotWaitedFor) {
  const std::string prefix = encode_journal_record(added(make_lease("A", 100)));
  for (std::uint32_t length : {LeaseJournal::kMaxRecordSize + 1, 0x7fffffffu, 0xffffffffu}) {
    SCOPED_TRACE(length);
    std::size_t valid = 0;
    const auto result = replay_journal(prefix + header(length, 0) + "xyz", valid);
    EXPECT_EQ(valid, prefix.size());
    EXPECT_EQ(ids_of(result.leases), std::vector<std::string>{"A"});
    EXPECT_TRUE(Contains(result.problem, "record length " + std::to_string(length)));
    EXPECT_TRUE(Contains(result.problem, "too large"));
  }
}

// Virtual memory of this process in bytes (VmSize).
rlim_t virtual_size() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmSize:", 0) == 0) return static_cast<rlim_t>(std::strtoull(line.c_str() + 7, nullptr, 10)) * 1024;
  return 0;
}

TEST(LeaseJournalReplayTest, AnOversizedLengthFieldIsRefusedWithoutAllocatingIt) {
  // In a child with its address space capped at what it uses now plus 64
  // MiB: had the loader allocated the 4 GiB the length field claims, it would
  // die of std::bad_alloc instead of exiting 0.
  TempDir tmp;
  {
    std::ofstream out(tmp.path() + "/" + kJournalName, std::ios::binary);
    out << encode_journal_record(added(make_lease("A", 100))) << header(0xfffffff0u, 0) << std::string(64, 'z');
  }
  const auto load_with_capped_memory = [&] {
    const rlim_t cap = virtual_size() + (64u << 20);
    const rlimit limit{cap, cap};
    if (cap <= (64u << 20) || ::setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(3);
    UniqueFd dir(::open(tmp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    LeaseJournal journal(dir.get(), tmp.path());
    const bool ok = journal.loaded().leases.size() == 1 && journal.loaded().dropped_bytes == 8 + 64 &&
                    journal.loaded().problem.find("too large") != std::string::npos;
    std::_Exit(ok ? 0 : 1);
  };
  EXPECT_EXIT(load_with_capped_memory(),
      ::testing::ExitedWithCode(0), "");
}

// ---------------------------------------------------------------- LeaseJournal on a file

class LeaseJournalFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.reset(::open(tmp_.path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    ASSERT_TRUE(dir_);
  }
  std::string path(const char* name = kJournalName) const { return tmp_.path() + "/" + name; }
  void write_file(const std::string& bytes, const char* name = kJournalName) {
    std::ofstream out(path(name), std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  std::string file_bytes(const char* name = kJournalName) const {
    std::ifstream in(path(name), std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  bool exists(const char* name) const {
    struct stat st {};
    return ::lstat(path(name).c_str(), &st) == 0;
  }
  std::unique_ptr<LeaseJournal> open() { return std::make_unique<LeaseJournal>(dir_.get(), tmp_.path()); }
  std::vector<std::string> dir_entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(tmp_.path())) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  TempDir tmp_;
  UniqueFd dir_;
};

TEST_F(LeaseJournalFileTest, ANewJournalIsAnEmptyRegularFileOfMode0600) {
  const mode_t old_umask = ::umask(0);  // the mode must not depend on the umask
  auto journal = open();
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::lstat(path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_TRUE(journal->loaded().leases.empty());
  EXPECT_EQ(journal->loaded().dropped_bytes, 0u);
  EXPECT_EQ(journal->records(), 0u);
}

TEST_F(LeaseJournalFileTest, ChangesAreAppendedAndFoundAgainByTheNextOpen) {
  {
    auto journal = open();
    ASSERT_TRUE(journal->lease_added(make_lease("A", 100)));
    ASSERT_TRUE(journal->lease_added(make_lease("B", 101)));
    ASSERT_TRUE(journal->process_added("B", make_process(42)));
    ASSERT_TRUE(journal->lease_removed("A"));
    EXPECT_EQ(journal->records(), 4u);
  }
  const auto records = std::vector<journal::JournalRecord>{added(make_lease("A", 100)), added(make_lease("B", 101)),
                                                           process_added("B", make_process(42)), removed("A")};
  EXPECT_EQ(file_bytes(), encode_all(records)) << "one framed record per change, nothing else";
  auto again = open();
  EXPECT_EQ(again->loaded().records, 4u);
  EXPECT_EQ(again->records(), 4u);
  EXPECT_TRUE(same_leases(again->loaded().leases, model_live(records, 4)));
}

TEST_F(LeaseJournalFileTest, ATornTailAtEveryLengthIsCutOnOpenAndReported) {
  const auto records = sample_records();
  const std::string bytes = encode_all(records);
  const auto boundaries = boundaries_of(records);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::size_t whole =
        static_cast<std::size_t>(std::upper_bound(boundaries.begin(), boundaries.end(), cut) - boundaries.begin()) - 1;
    write_file(bytes.substr(0, cut));
    auto journal = open();
    EXPECT_EQ(journal->loaded().dropped_bytes, cut - boundaries[whole]);
    EXPECT_EQ(journal->loaded().problem.empty(), cut == boundaries[whole]) << journal->loaded().problem;
    EXPECT_EQ(journal->loaded().records, whole);
    EXPECT_TRUE(same_leases(journal->loaded().leases, model_live(records, whole)));
    EXPECT_EQ(file_bytes(), bytes.substr(0, boundaries[whole])) << "the bad tail is cut off the file";
  }
}

TEST_F(LeaseJournalFileTest, AfterACutTailNewRecordsFollowTheValidPrefix) {
  const auto records = sample_records();
  const std::string good = encode_all(records);
  // A torn record (the first 11 bytes of a real one) after the valid ones.
  const std::string torn = encode_journal_record(added(make_lease("torn", 199))).substr(0, 11);
  write_file(good + torn);
  {
    auto journal = open();
    EXPECT_EQ(journal->loaded().dropped_bytes, torn.size());
    EXPECT_TRUE(Contains(journal->loaded().problem, "torn"));
    ASSERT_TRUE(journal->lease_added(make_lease("E", 110)));
  }
  EXPECT_EQ(file_bytes(), good + encode_journal_record(added(make_lease("E", 110))));
  auto again = open();
  EXPECT_EQ(again->loaded().dropped_bytes, 0u);
  EXPECT_EQ(again->loaded().records, records.size() + 1);
  auto expected = model_live(records, records.size());
  expected.push_back(make_lease("E", 110));
  EXPECT_TRUE(same_leases(again->loaded().leases, expected));
}

TEST_F(LeaseJournalFileTest, ACorruptLastRecordIsCutOnOpen) {
  const auto records = sample_records();
  std::string bytes = encode_all(records);
  const auto boundaries = boundaries_of(records);
  bytes[bytes.size() - 3] ^= 0x04;  // in the body of the last record
  write_file(bytes);
  auto journal = open();
  EXPECT_EQ(journal->loaded().dropped_bytes, bytes.size() - boundaries[records.size() - 1]);
  EXPECT_TRUE(Contains(journal->loaded().problem, "corrupt"));
  EXPECT_TRUE(same_leases(journal->loaded().leases, model_live(records, records.size() - 1)));
  EXPECT_EQ(file_bytes().size(), boundaries[records.size() - 1]);
}

TEST_F(LeaseJournalFileTest, ASymlinkPlantedAtTheJournalPathIsNeverFollowed) {
  const std::string victim = path("victim");
  write_file("precious", "victim");
  ASSERT_EQ(::symlink(victim.c_str(), path().c_str()), 0);
  EXPECT_THROW(open(), std::runtime_error);
  EXPECT_EQ(file_bytes("victim"), "precious");

  // A dangling link: following it would create the target.
  ASSERT_EQ(::unlink(path().c_str()), 0);
  ASSERT_EQ(::symlink(path("created-through-link").c_str(), path().c_str()), 0);
  EXPECT_THROW(open(), std::runtime_error);
  EXPECT_FALSE(exists("created-through-link"));
}

TEST_F(LeaseJournalFileTest, SomethingOtherThanARegularFileAtTheJournalPathIsRefused) {
  ASSERT_EQ(::mkfifo(path().c_str(), 0600), 0);
  EXPECT_THROW(open(), std::runtime_error);
  ASSERT_EQ(::unlink(path().c_str()), 0);
  ASSERT_EQ(::mkdir(path().c_str(), 0700), 0);
  EXPECT_THROW(open(), std::runtime_error);
}

std::vector<journal::JournaledLease> numbered_leases(std::size_t first, std::size_t count) {
  std::vector<journal::JournaledLease> out;
  for (std::size_t i = first; i < first + count; ++i)
    out.push_back(make_lease("lease-" + std::to_string(i), static_cast<std::uint32_t>(1000 + i)));
  return out;
}

TEST_F(LeaseJournalFileTest, CompactionIsNotRunWhileTheJournalIsSmallOrMostlyLive) {
  auto journal = open();
  for (const auto& l : numbered_leases(0, LeaseJournal::kCompactMinRecords - 1)) ASSERT_TRUE(journal->lease_added(l));
  bool called = false;
  journal->compact_if_needed(0, [&] {
    called = true;
    return LeaseJournal::Snapshot{};
  });
  EXPECT_FALSE(called) << "fewer than kCompactMinRecords records";
  ASSERT_TRUE(journal->lease_added(make_lease("one-more", 5000)));
  // 1024 records, 300 live: fewer than 4 records per live lease.
  journal->compact_if_needed(300, [&] {
    called = true;
    return LeaseJournal::Snapshot{};
  });
  EXPECT_FALSE(called);
  EXPECT_EQ(journal->records(), LeaseJournal::kCompactMinRecords);
}

TEST_F(LeaseJournalFileTest, CompactionRewritesTheJournalToTheLiveLeasesOnlyAndAtomically) {
  // A compaction file left by a broker that died while compacting.
  write_file("half-written compaction", kCompactName);
  auto journal = open();
  EXPECT_TRUE(journal->loaded().leases.empty()) << "a leftover leases.journal.new is never read";
  const auto all = numbered_leases(0, 1100);
  for (const auto& l : all) ASSERT_TRUE(journal->lease_added(l));
  std::vector<journal::JournaledLease> live;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i % 100 == 7) {
      live.push_back(all[i]);
      *live.back().add_processes() = make_process(static_cast<pid_t>(i));
      ASSERT_TRUE(journal->process_added(all[i].id(), make_process(static_cast<pid_t>(i))));
    } else {
      ASSERT_TRUE(journal->lease_removed(all[i].id()));
    }
  }
  struct stat before {};
  ASSERT_EQ(::stat(path().c_str(), &before), 0);
  bool called = false;
  journal->compact_if_needed(live.size(), [&] {
    called = true;
    return LeaseJournal::Snapshot{live, {}};
  });
  ASSERT_TRUE(called);
  EXPECT_EQ(journal->records(), live.size());
  EXPECT_EQ(dir_entries(), std::vector<std::string>{kJournalName}) << "no leases.journal.new survives";
  struct stat after {};
  ASSERT_EQ(::stat(path().c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino) << "a new file renamed over the old one, not the old one rewritten in place";
  EXPECT_EQ(after.st_mode & 07777, 0600u);
  std::vector<journal::JournalRecord> expected_records;
  for (const auto& l : live) expected_records.push_back(added(l));
  EXPECT_EQ(file_bytes(), encode_all(expected_records)) << "one full lease_added record per live lease";

  // Appends go to the compacted file.
  ASSERT_TRUE(journal->lease_removed(live.front().id()));
  ASSERT_TRUE(journal->lease_added(make_lease("after", 9000)));
  journal.reset();
  auto again = open();
  EXPECT_EQ(again->loaded().dropped_bytes, 0u);
  EXPECT_EQ(again->loaded().records, live.size() + 2);
  auto expected = std::vector<journal::JournaledLease>(live.begin() + 1, live.end());
  expected.push_back(make_lease("after", 9000));
  EXPECT_TRUE(same_leases(again->loaded().leases, expected));
}

TEST_F(LeaseJournalFileTest, CompactionDoesNotWriteThroughASymlinkPlantedAtTheNewFile) {
  write_file("precious", "victim");
  ASSERT_EQ(::symlink(path("victim").c_str(), path(kCompactName).c_str()), 0);
  auto journal = open();
  ASSERT_TRUE(journal->lease_added(make_lease("A", 100)));
  journal->compact({{make_lease("A", 100)}, {}});
  EXPECT_EQ(file_bytes("victim"), "precious");
  struct stat st {};
  ASSERT_EQ(::lstat(path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "the journal is a regular file, not the planted link";
  EXPECT_FALSE(exists(kCompactName));
  journal.reset();
  EXPECT_EQ(ids_of(open()->loaded().leases), std::vector<std::string>{"A"});
}

TEST_F(LeaseJournalFileTest, CompactionThatCannotCreateItsFileKeepsAppendingToTheOldOne) {
  // A directory where the compaction file would go cannot be unlinked with
  // unlinkat(..., 0) nor opened O_CREAT|O_EXCL: compaction gives up.
  ASSERT_EQ(::mkdir(path(kCompactName).c_str(), 0700), 0);
  auto journal = open();
  ASSERT_TRUE(journal->lease_added(make_lease("A", 100)));
  ASSERT_TRUE(journal->lease_added(make_lease("B", 101)));
  ASSERT_TRUE(journal->lease_removed("A"));
  EXPECT_FALSE(journal->compact({{make_lease("B", 101)}, {}}));
  EXPECT_TRUE(journal->compaction_failed()) << "reported, and retried later";
  EXPECT_TRUE(journal->degraded());
  EXPECT_EQ(journal->records(), 3u);
  ASSERT_TRUE(journal->lease_added(make_lease("C", 102)));
  // Once the obstacle is gone, the retry compacts and the journal is healthy.
  ASSERT_EQ(::rmdir(path(kCompactName).c_str()), 0);
  EXPECT_TRUE(journal->compact({{make_lease("B", 101), make_lease("C", 102)}, {{4101, 2}}}));
  EXPECT_FALSE(journal->compaction_failed());
  EXPECT_FALSE(journal->degraded());
  journal.reset();
  auto again = open();
  EXPECT_EQ(ids_of(again->loaded().leases), (std::vector<std::string>{"B", "C"}));
  EXPECT_EQ(again->loaded().login_sessions, (std::map<std::uint32_t, std::uint32_t>{{4101, 2}}))
      << "login counts are part of a compacted journal";
}

TEST_F(LeaseJournalFileTest, AnOwedRecordThatCannotBeWrittenStaysQueuedAheadOfNewerOnes) {
  const auto sequence = [&] {
    ::signal(SIGXFSZ, SIG_IGN);
    auto journal = open();
    if (!journal->lease_added(make_lease("A", 100))) std::_Exit(10);
    struct stat st {};
    ::stat(path().c_str(), &st);
    rlimit cap{};
    ::getrlimit(RLIMIT_FSIZE, &cap);
    const rlim_t hard = cap.rlim_max;
    cap.rlim_cur = static_cast<rlim_t>(st.st_size);
    if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(11);
    if (journal->lease_removed("A")) std::_Exit(12);  // refused now...
    const auto seq = journal->last_seq();
    if (journal->is_written(seq) || journal->owed_records() != 1 || !journal->degraded()) std::_Exit(13);
    if (journal->lease_added(make_lease("B", 101))) std::_Exit(14);  // a withdrawable one is dropped
    if (journal->owed_records() != 1) std::_Exit(15);
    cap.rlim_cur = hard;
    ::setrlimit(RLIMIT_FSIZE, &cap);
    if (!journal->retry() || !journal->is_written(seq) || journal->degraded()) std::_Exit(16);  // ...written later
    if (!journal->lease_added(make_lease("C", 102))) std::_Exit(17);
    journal.reset();
    if (ids_of(open()->loaded().leases) != std::vector<std::string>{"C"}) std::_Exit(18);
    std::_Exit(0);
  };
  EXPECT_EXIT(sequence(), ::testing::ExitedWithCode(0), "");
}

// ---------------------------------------------------------------- the broker

constexpr gid_t kUsersGroup = 5000;

Caller make_caller(uid_t uid, gid_t gid, pid_t pid) {
  Caller c;
  c.uid = uid;
  c.gid = gid;
  c.pid = pid;
  c.groups = {kUsersGroup};
  return c;
}

const Caller kAlice = make_caller(4101, 4101, 31001);
const Caller kBob = make_caller(4102, 4102, 31002);
const Caller kRoot = make_caller(0, 0, 31000);

class FreeHostProbe : public DisplayProbe {
 public:
  FreeHostProbe() : DisplayProbe("/nonexistent/x11", "/nonexistent/xpra", "unit-test-host") {}
  DisplayFacts probe(std::uint32_t display, const std::string&) const override {
    DisplayFacts f;
    f.display = display;
    return f;
  }
};

// Holds every reap job until the test finishes it.
class HoldingReaper : public LeaseReaper {
 public:
  void reap(ReapJob job, std::function<void(ReapOutcome)> done) override {
    jobs.emplace_back(std::move(job), std::move(done));
  }
  bool holds(const std::string& id) const {
    return std::any_of(jobs.begin(), jobs.end(), [&](const auto& j) { return j.first.lease_id == id; });
  }
  void finish_all() {
    auto pending = std::move(jobs);
    jobs.clear();
    for (auto& j : pending) j.second(ReapOutcome{});
  }
  std::vector<std::pair<ReapJob, std::function<void(ReapOutcome)>>> jobs;
};

// A pid that is certainly not running: a child of ours that has exited and
// been reaped (its number is not reused this quickly in practice).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) std::_Exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

class BrokerRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "run as root, as CI does: acquire hands directories to test uids";
    ASSERT_TRUE(testing::restore_effective_capabilities());
    runtime_dir_ = tmp_.path() + "/run";
    ASSERT_EQ(::mkdir(runtime_dir_.c_str(), 0755), 0);
    config_.runtime_dir = runtime_dir_;
    config_.display_first = 700;
    config_.display_last = 709;
    config_.max_leases_per_user = 8;
    config_.max_leases = 10;
    config_.acquire_burst = 100000;
    config_.acquires_per_minute = 1000000;
    config_.failures_before_backoff = 1000;
    policy_.allowed_gids = {kUsersGroup};
  }

  // A broker with a journal on the runtime dir: the first one, or one
  // "restarted" after the previous one was dropped (as kill -9 would).
  BrokerAssembly& start_broker(bool with_journal = true) {
    broker_.reset();
    journal_.reset();
    // Reap jobs of a broker that is gone die with it, as in a crash.
    if (reaper_) reaper_->jobs.clear();
    UniqueFd dir(::open(runtime_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    EXPECT_TRUE(dir);
    if (with_journal) journal_ = std::make_unique<LeaseJournal>(dir.get(), runtime_dir_);
    AssemblyParts parts;
    parts.host.probe = std::make_unique<FreeHostProbe>();
    parts.host.user_dirs = std::make_unique<UserDirectories>(std::move(dir), runtime_dir_, 0);
    parts.host.clock = [this] { return now_; };
    parts.host.reaper = reaper_.get();
    parts.journal = journal_.get();
    broker_ = std::make_unique<BrokerAssembly>(config_, policy_, std::move(parts));
    return *broker_;
  }

  // What a crashed broker left: `leases` in the journal, then a broker
  // started on it restores what the journal holds.
  LeaseCore::RestoreSummary restore(const std::vector<journal::JournaledLease>& leases,
                                        seconds grace = seconds(30)) {
    {
      UniqueFd dir(::open(runtime_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      LeaseJournal previous(dir.get(), runtime_dir_);
      for (const auto& l : leases) EXPECT_TRUE(previous.lease_added(l));
    }
    return restart(grace);
  }
  // Restarts the broker from what its journal holds now.
  LeaseCore::RestoreSummary restart(seconds grace = seconds(30)) {
    start_broker();
    return broker_->restore(grace);
  }
  std::vector<journal::JournaledLease> journal_on_disk() {
    UniqueFd dir(::open(runtime_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return LeaseJournal(dir.get(), runtime_dir_).loaded().leases;
  }

  v1::Response call(const Caller& c, ConnectionId conn, const std::function<void(v1::Request&)>& fill) {
    v1::Request r;
    fill(r);
    return broker_->core().handle(c, conn, r);
  }
  v1::Response acquire(const Caller& c, ConnectionId conn) {
    return call(c, conn, [](v1::Request& r) { r.mutable_acquire()->set_purpose("durable"); });
  }
  v1::Response release(const Caller& c, ConnectionId conn, const std::string& id) {
    return call(c, conn, [&](v1::Request& r) { r.mutable_release()->set_lease_id(id); });
  }
  v1::Response reattach(const Caller& c, ConnectionId conn, const std::string& id, const std::string& token) {
    return call(c, conn, [&](v1::Request& r) {
      r.mutable_reattach()->set_lease_id(id);
      r.mutable_reattach()->set_reattach_token(token);
    });
  }
  // The lease as `list --all` shows it to root, or nullopt.
  std::optional<v1::Lease> listed(const std::string& id) {
    const auto r = call(kRoot, 999, [](v1::Request& req) { req.mutable_list()->set_all(true); });
    EXPECT_EQ(r.status(), v1::OK);
    for (const auto& l : r.list().leases())
      if (l.id() == id) return l;
    return std::nullopt;
  }
  void expect_consistent() {
    EXPECT_EQ(broker_->core().leases().size(), broker_->core().allocator().leased_count());
    std::set<std::uint32_t> displays;
    for (const Lease* l : broker_->core().leases().all()) {
      EXPECT_TRUE(broker_->core().allocator().is_leased(l->display)) << l->display;
      EXPECT_TRUE(displays.insert(l->display).second) << "display " << l->display << " held twice";
    }
  }

  journal::JournaledLease recovered(const std::string& id, std::uint32_t display, const Caller& holder_of,
                                    pid_t holder_pid) {
    auto l = make_lease(id, display, holder_of.uid, holder_pid);
    l.set_gid(holder_of.gid);
    return l;
  }

  TempDir tmp_;
  std::string runtime_dir_;
  BrokerConfig config_;
  AccessPolicy policy_;
  SteadyTime now_ = SteadyTime(std::chrono::hours(1000));
  std::unique_ptr<HoldingReaper> reaper_;
  std::unique_ptr<LeaseJournal> journal_;
  std::unique_ptr<BrokerAssembly> broker_;
};

TEST_F(BrokerRestoreTest, ALeaseWhoseHolderIsAliveWaitsDetachedUntilTheGracePassesThenIsReaped) {
  const auto summary = restore({recovered("alive", 703, kAlice, ::getpid())}, seconds(30));
  EXPECT_EQ(summary.waiting, 1u);
  EXPECT_EQ(summary.reaping, 0u);
  EXPECT_EQ(summary.dropped, 0u);
  auto l = listed("alive");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->state(), v1::DETACHED);
  EXPECT_EQ(l->display(), 703u);
  EXPECT_EQ(l->uid(), kAlice.uid);
  EXPECT_TRUE(broker_->core().allocator().is_leased(703));
  expect_consistent();

  now_ += seconds(29);
  broker_->core().expire_detached();
  ASSERT_TRUE(listed("alive")) << "still within the grace period";
  EXPECT_EQ(listed("alive")->state(), v1::DETACHED);

  now_ += seconds(1);
  broker_->core().expire_detached();
  EXPECT_FALSE(listed("alive")) << "the holder did not reattach within the grace period";
  EXPECT_FALSE(broker_->core().allocator().is_leased(703));
  EXPECT_TRUE(journal_on_disk().empty()) << "its end is in the journal";
  expect_consistent();
}

TEST_F(BrokerRestoreTest, AnExpiredLeaseIsReapedAndHoldsItsDisplayUntilTheReaperIsDone) {
  reaper_ = std::make_unique<HoldingReaper>();
  restore({recovered("alive", 703, kAlice, ::getpid())}, seconds(5));
  now_ += seconds(5);
  broker_->core().expire_detached();
  ASSERT_TRUE(reaper_->holds("alive"));
  ASSERT_TRUE(listed("alive"));
  EXPECT_EQ(listed("alive")->state(), v1::ENDING);
  EXPECT_TRUE(broker_->core().allocator().is_leased(703));
  EXPECT_EQ(reattach(kAlice, 5, "alive", make_lease("alive", 703).reattach_token()).status(), v1::NOT_FOUND)
      << "an ending lease cannot be taken back";
  reaper_->finish_all();
  EXPECT_FALSE(listed("alive"));
  EXPECT_FALSE(broker_->core().allocator().is_leased(703));
}

TEST_F(BrokerRestoreTest, ALeaseWhoseHolderIsDeadIsReapedAtOnce) {
  reaper_ = std::make_unique<HoldingReaper>();
  const auto summary =
      restore({recovered("dead", 701, kAlice, dead_pid()), recovered("alive", 702, kBob, ::getpid())});
  EXPECT_EQ(summary.reaping, 1u);
  EXPECT_EQ(summary.waiting, 1u);
  ASSERT_TRUE(reaper_->holds("dead")) << "reaping starts in restore(), no clock needed";
  EXPECT_FALSE(reaper_->holds("alive"));
  ASSERT_EQ(reaper_->jobs.size(), 1u);
  EXPECT_EQ(reaper_->jobs[0].first.display, 701u);
  EXPECT_EQ(reaper_->jobs[0].first.uid, kAlice.uid);
  const auto dead = listed("dead");
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->state(), v1::ENDING);
  EXPECT_TRUE(broker_->core().allocator().is_leased(701)) << "not reused before it is reaped";
  reaper_->finish_all();
  EXPECT_FALSE(listed("dead"));
  EXPECT_FALSE(broker_->core().allocator().is_leased(701));
  EXPECT_EQ(ids_of(journal_on_disk()), std::vector<std::string>{"alive"});
  expect_consistent();
}

TEST_F(BrokerRestoreTest, ADuplicateDisplayGoesToTheLaterLeaseAndOneOutsideTheRangeIsDropped) {
  const auto summary = restore({
      recovered("first", 704, kAlice, ::getpid()),
      recovered("same-display", 704, kBob, ::getpid()),
      recovered("below", 699, kAlice, ::getpid()),
      recovered("above", 710, kAlice, ::getpid()),
      recovered("far", 4000000000u, kAlice, ::getpid()),
      recovered("second", 705, kBob, ::getpid()),
  });
  EXPECT_EQ(summary.dropped, 4u);
  EXPECT_EQ(summary.waiting, 2u);
  EXPECT_EQ(broker_->core().leases().size(), 2u);
  ASSERT_NE(broker_->core().leases().find_by_display(704), nullptr);
  EXPECT_EQ(broker_->core().leases().find_by_display(704)->id, "same-display")
      << "the later record wins: the number was handed out again, so the earlier lease had ended";
  EXPECT_TRUE(listed("second"));
  for (const char* id : {"first", "below", "above", "far"}) EXPECT_FALSE(listed(id)) << id;
  expect_consistent();
  // The dropped ones are gone from the journal too.
  EXPECT_EQ(ids_of(journal_on_disk()), (std::vector<std::string>{"same-display", "second"}));
  // And a new acquire never gets 704 or 705.
  std::set<std::uint32_t> got;
  for (int i = 0; i < 8; ++i) {
    const auto r = acquire(i % 2 ? kBob : kAlice, 10);
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    got.insert(r.acquire().lease().display());
  }
  EXPECT_EQ(got.size(), 8u);
  EXPECT_FALSE(got.count(704) || got.count(705));
  EXPECT_EQ(acquire(kBob, 11).status(), v1::EXHAUSTED) << "all ten displays are taken";
  expect_consistent();
}

TEST_F(BrokerRestoreTest, ReattachWithTheRightUidAndTokenMovesTheLeaseToTheNewConnection) {
  const auto j = recovered("mine", 706, kAlice, ::getpid());
  restore({j});
  Caller alice_again = kAlice;
  alice_again.pid = 31555;
  const auto r = reattach(alice_again, 42, "mine", j.reattach_token());
  ASSERT_EQ(r.status(), v1::OK) << r.message();
  EXPECT_EQ(r.reattach().lease().id(), "mine");
  EXPECT_EQ(r.reattach().lease().display(), 706u);
  EXPECT_EQ(r.reattach().lease().state(), v1::ACTIVE);
  EXPECT_EQ(r.reattach().lease().pid(), 31555) << "the holder is the reattaching process now";
  EXPECT_EQ(listed("mine")->state(), v1::ACTIVE);
  EXPECT_EQ(broker_->core().leases().ids_for_connection(42), std::vector<std::string>{"mine"});

  // Past the grace: a reattached lease is not expired.
  now_ += seconds(3600);
  broker_->core().expire_detached();
  ASSERT_TRUE(listed("mine"));
  EXPECT_EQ(listed("mine")->state(), v1::ACTIVE);

  // Its holder's other (unrelated) connection closing changes nothing...
  broker_->core().connection_closed(41);
  EXPECT_TRUE(listed("mine"));
  // ...its new connection closing ends it, like any lease.
  broker_->core().connection_closed(42);
  EXPECT_FALSE(listed("mine"));
  EXPECT_FALSE(broker_->core().allocator().is_leased(706));
  EXPECT_TRUE(journal_on_disk().empty());
}

TEST_F(BrokerRestoreTest, AReattachedLeaseCanBeReleasedOnItsNewConnection) {
  const auto j = recovered("mine", 706, kAlice, ::getpid());
  restore({j});
  ASSERT_EQ(reattach(kAlice, 42, "mine", j.reattach_token()).status(), v1::OK);
  EXPECT_EQ(release(kAlice, 42, "mine").status(), v1::OK);
  EXPECT_FALSE(listed("mine"));
}

TEST_F(BrokerRestoreTest, AWrongTokenOrAnotherUidGetsNotFoundAndChangesNothing) {
  const auto j = recovered("mine", 707, kAlice, ::getpid());
  restore({j});
  const std::string token = j.reattach_token();
  std::string flipped = token;
  flipped.back() ^= 1;
  const struct {
    const char* what;
    Caller caller;
    std::string id, token;
  } attempts[] = {
      {"wrong token", kAlice, "mine", flipped},
      {"token prefix", kAlice, "mine", token.substr(0, token.size() - 1)},
      {"token plus a byte", kAlice, "mine", token + "0"},
      {"empty token", kAlice, "mine", ""},
      {"other uid, right token", kBob, "mine", token},
      {"root, right token", kRoot, "mine", token},
      {"no such lease", kAlice, "nope", token},
  };
  for (const auto& a : attempts) {
    SCOPED_TRACE(a.what);
    const auto r = reattach(a.caller, 50, a.id, a.token);
    EXPECT_EQ(r.status(), v1::NOT_FOUND) << r.message();
    EXPECT_FALSE(r.has_reattach());
    EXPECT_EQ(r.message().find(token), std::string::npos) << "the reply never shows the token";
    auto l = listed("mine");
    ASSERT_TRUE(l);
    EXPECT_EQ(l->state(), v1::DETACHED);
    EXPECT_EQ(l->pid(), ::getpid());
    EXPECT_TRUE(broker_->core().leases().ids_for_connection(50).empty());
  }
  // The wrong tries did not end or shorten anything: the holder still can.
  now_ += seconds(29);
  broker_->core().expire_detached();
  EXPECT_EQ(reattach(kAlice, 51, "mine", token).status(), v1::OK);
}

TEST_F(BrokerRestoreTest, AnotherUsersConnectionClosingDoesNotTouchADetachedLease) {
  restore({recovered("mine", 708, kAlice, ::getpid())});
  for (ConnectionId c : {1u, 2u, 3u, 999u}) broker_->core().connection_closed(c);
  ASSERT_TRUE(listed("mine"));
  EXPECT_EQ(listed("mine")->state(), v1::DETACHED);
}

TEST_F(BrokerRestoreTest, ARestartedBrokerFindsEveryAcknowledgedLeaseWithItsTokenAndNoReleasedOne) {
  start_broker();
  std::map<std::string, std::pair<std::uint32_t, std::string>> held;  // id -> display, token
  for (int i = 0; i < 6; ++i) {
    const auto r = acquire(i % 2 ? kBob : kAlice, static_cast<ConnectionId>(10 + i));
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    ASSERT_FALSE(r.acquire().reattach_token().empty());
    held[r.acquire().lease().id()] = {r.acquire().lease().display(), r.acquire().reattach_token()};
  }
  // Release two; one more acquired and its connection closed.
  auto it = held.begin();
  std::vector<std::string> released;
  for (int i = 0; i < 2; ++i, ++it) {
    const Lease* l = broker_->core().leases().find(it->first);
    ASSERT_NE(l, nullptr);
    const Caller& owner = l->uid == kAlice.uid ? kAlice : kBob;
    ASSERT_EQ(release(owner, l->connection, it->first).status(), v1::OK);
    released.push_back(it->first);
  }
  for (const auto& id : released) held.erase(id);
  const auto gone = acquire(kAlice, 77);
  ASSERT_EQ(gone.status(), v1::OK);
  broker_->core().connection_closed(77);

  // "kill -9": the broker object goes without any shutdown step.
  const auto summary = restart();
  EXPECT_EQ(summary.dropped, 0u);
  // The holders' pids (made-up caller pids) are not running: the restored
  // leases are reaped at once. Check what came back before that, from the
  // journal itself.
  std::set<std::string> restored_ids;
  for (const auto& l : journal_->loaded().leases) {
    restored_ids.insert(l.id());
    ASSERT_TRUE(held.count(l.id())) << "lease " << l.id() << " was released or closed, yet restored";
    EXPECT_EQ(l.display(), held[l.id()].first);
    EXPECT_EQ(l.reattach_token(), held[l.id()].second);
  }
  EXPECT_EQ(restored_ids.size(), held.size());
}

TEST_F(BrokerRestoreTest, AfterARestartTheHolderReattachesAndNothingIsHandedOutTwice) {
  // Holders are this process (alive), so the leases wait for it.
  Caller alice = kAlice, bob = kBob;
  alice.pid = bob.pid = ::getpid();
  start_broker();
  std::map<std::string, std::pair<std::uint32_t, std::string>> held;
  for (int i = 0; i < 8; ++i) {
    const auto r = acquire(i % 2 ? bob : alice, static_cast<ConnectionId>(10 + i));
    ASSERT_EQ(r.status(), v1::OK) << r.message();
    held[r.acquire().lease().id()] = {r.acquire().lease().display(), r.acquire().reattach_token()};
  }
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("restart " + std::to_string(round));
    const auto summary = restart(seconds(60));
    EXPECT_EQ(summary.waiting, held.size());
    EXPECT_EQ(journal_->records(), journal_->loaded().records) << "restoring a clean journal appends nothing";
    expect_consistent();
    // Until reattached nobody else gets those displays.
    for (int i = 0; i < 2; ++i) {
      const auto r = acquire(alice, 500 + static_cast<ConnectionId>(i));
      ASSERT_EQ(r.status(), v1::OK) << r.message();
      for (const auto& [id, d] : held) EXPECT_NE(r.acquire().lease().display(), d.first);
      ASSERT_EQ(release(alice, 500 + static_cast<ConnectionId>(i), r.acquire().lease().id()).status(), v1::OK);
    }
    ConnectionId conn = 100 * static_cast<ConnectionId>(round + 1);
    for (const auto& [id, d] : held) {
      const Lease* l = broker_->core().leases().find(id);
      ASSERT_NE(l, nullptr) << id;
      const auto r = reattach(l->uid == alice.uid ? alice : bob, ++conn, id, d.second);
      ASSERT_EQ(r.status(), v1::OK) << r.message();
      EXPECT_EQ(r.reattach().lease().display(), d.first);
    }
    expect_consistent();
  }
}

TEST_F(BrokerRestoreTest, ALeaseReleasedWhileItWasBeingReapedIsNotHandedBackAfterARestart) {
  // The broker replied to the release (state ENDING) and was killed while
  // the reaper still ran: the journal still has the lease (its end is written
  // only when reaping is done, so a restarted broker finishes the job). The
  // restarted broker must finish reaping it, and the token must no longer
  // give it back: its holder released it.
  reaper_ = std::make_unique<HoldingReaper>();
  Caller alice = kAlice;
  alice.pid = ::getpid();  // the holder stays alive, as a client that released does
  start_broker();
  const auto r = acquire(alice, 10);
  ASSERT_EQ(r.status(), v1::OK);
  const std::string id = r.acquire().lease().id(), token = r.acquire().reattach_token();
  const auto rel = release(alice, 10, id);
  ASSERT_EQ(rel.status(), v1::OK);
  EXPECT_EQ(rel.release().lease().state(), v1::ENDING);
  ASSERT_TRUE(reaper_->holds(id));

  restart(seconds(60));
  EXPECT_EQ(reattach(alice, 11, id, token).status(), v1::NOT_FOUND)
      << "a lease its holder released came back after a broker restart";
  auto l = listed(id);
  if (l) {
    EXPECT_EQ(l->state(), v1::ENDING) << "a released lease must be reaped, not wait for its holder";
  }
}

TEST_F(BrokerRestoreTest, ARecoveredProcessIsTrackedOnlyIfItIsTheSameProcess) {
  // A real child of ours (uid 0), named in the journal with its true start
  // time, and the same pid with a wrong one (as if the pid had been reused).
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    std::_Exit(0);
  }
  ASSERT_GT(child, 0);
  ProcessInfo info;
  const bool read = read_process(child, info);
  auto same = recovered("same", 700, kRoot, ::getpid());
  auto reused = recovered("reused", 701, kRoot, ::getpid());
  auto p = make_process(child);
  p.set_start_time(info.start_time);
  *same.add_processes() = p;
  p.set_start_time(info.start_time + 1);
  *reused.add_processes() = p;
  restore({same, reused});
  const auto same_listed = listed("same"), reused_listed = listed("reused");
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(read);
  ASSERT_TRUE(same_listed && reused_listed);
  EXPECT_EQ(std::vector<int>(same_listed->process_pids().begin(), same_listed->process_pids().end()),
            std::vector<int>{child});
  EXPECT_EQ(reused_listed->process_pids_size(), 0) << "a process with another start time is someone else";
}

TEST_F(BrokerRestoreTest, AJournalThatCannotBeWrittenRefusesTheAcquire) {
  // In a child (it changes a process limit): the journal file may not grow,
  // so the lease cannot be recorded and must not be handed out.
  const auto acquire_with_a_full_journal = [&] {
    ::signal(SIGXFSZ, SIG_IGN);
    start_broker();
    const auto first = acquire(kAlice, 1);
    if (first.status() != v1::OK) std::_Exit(10);
    struct stat st {};
    ::stat((runtime_dir_ + "/" + kJournalName).c_str(), &st);
    const rlimit cap{static_cast<rlim_t>(st.st_size), static_cast<rlim_t>(st.st_size)};
    if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(11);
    const auto refused = acquire(kAlice, 1);
    if (refused.status() != v1::INTERNAL) std::_Exit(12);
    if (broker_->core().leases().size() != 1 || broker_->core().allocator().leased_count() != 1) std::_Exit(13);
    std::_Exit(0);
  };
  EXPECT_EXIT(acquire_with_a_full_journal(),
      ::testing::ExitedWithCode(0), "");
}

TEST_F(BrokerRestoreTest, WithGroupCommitRecordsReachTheFileOnlyAtTheCommit) {
  start_broker().durable()->set_group_commit(true);
  const auto a = acquire(kAlice, 1);
  const auto b = acquire(kBob, 2);
  ASSERT_EQ(a.status(), v1::OK);
  ASSERT_EQ(b.status(), v1::OK);
  EXPECT_TRUE(broker_->has_uncommitted());
  EXPECT_TRUE(journal_on_disk().empty()) << "nothing may be written before the commit";
  const auto outcome = broker_->commit();
  EXPECT_TRUE(outcome.ok);
  EXPECT_TRUE(outcome.withdrawn.empty());
  EXPECT_FALSE(broker_->has_uncommitted());
  EXPECT_EQ(ids_of(journal_on_disk()),
            (std::vector<std::string>{a.acquire().lease().id(), b.acquire().lease().id()}));
  ASSERT_EQ(release(kAlice, 1, a.acquire().lease().id()).status(), v1::OK);
  EXPECT_TRUE(broker_->has_uncommitted());
  EXPECT_EQ(journal_on_disk().size(), 2u) << "the release is not on disk before its commit";
  EXPECT_TRUE(broker_->commit().ok);
  EXPECT_EQ(ids_of(journal_on_disk()), (std::vector<std::string>{b.acquire().lease().id()}));
}

TEST_F(BrokerRestoreTest, WithGroupCommitARecordWrittenOutsideARequestCarriesThePendingOnesInOrder) {
  start_broker().durable()->set_group_commit(true);
  const auto a = acquire(kAlice, 1);
  const auto b = acquire(kBob, 2);
  ASSERT_EQ(a.status(), v1::OK);
  // Bob's connection closes (not a request): his lease ends at once, and its
  // record is written after Alice's and Bob's pending acquires.
  broker_->core().connection_closed(2);
  EXPECT_EQ(ids_of(journal_on_disk()), (std::vector<std::string>{a.acquire().lease().id()}));
  EXPECT_FALSE(broker_->has_uncommitted());
  EXPECT_TRUE(broker_->commit().ok);
}

TEST_F(BrokerRestoreTest, WithGroupCommitAFailedCommitWithdrawsTheLeasesItCarried) {
  // In a child (it changes a process limit), as above, but the write fails
  // at the commit, after the acquire was answered in memory.
  const auto commit_into_a_full_journal = [&] {
    ::signal(SIGXFSZ, SIG_IGN);
    start_broker().durable()->set_group_commit(true);
    const auto first = acquire(kAlice, 1);
    if (first.status() != v1::OK || !broker_->commit().ok) std::_Exit(10);
    struct stat st {};
    ::stat((runtime_dir_ + "/" + kJournalName).c_str(), &st);
    const rlimit cap{static_cast<rlim_t>(st.st_size), static_cast<rlim_t>(st.st_size)};
    if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(11);
    const auto second = acquire(kAlice, 1);
    if (second.status() != v1::OK) std::_Exit(12);
    const auto outcome = broker_->commit();
    if (outcome.ok) std::_Exit(13);
    if (outcome.withdrawn != std::vector<std::string>{second.acquire().lease().id()}) std::_Exit(14);
    if (broker_->core().reply_after_failed_commit(second, outcome.withdrawn).status() != v1::INTERNAL) std::_Exit(15);
    if (broker_->core().reply_after_failed_commit(first, outcome.withdrawn).status() != v1::OK) std::_Exit(16);
    if (broker_->core().leases().size() != 1 || broker_->core().allocator().leased_count() != 1) std::_Exit(17);
    // The file still ends on a whole record: the first lease, no torn tail.
    const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    ::setrlimit(RLIMIT_FSIZE, &unlimited);
    UniqueFd dir(::open(runtime_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    LeaseJournal reread(dir.get(), runtime_dir_);
    if (reread.loaded().dropped_bytes != 0) std::_Exit(18);
    if (ids_of(reread.loaded().leases) != std::vector<std::string>{first.acquire().lease().id()}) std::_Exit(19);
    std::_Exit(0);
  };
  EXPECT_EXIT(commit_into_a_full_journal(), ::testing::ExitedWithCode(0), "");
}

// ---------------------------------------------------------- a full disk
// Each runs in a child: it caps the file size (RLIMIT_FSIZE) so the journal
// cannot grow, as on a full tmpfs. Exit codes name the failed check.

void cap_journal_growth(const std::string& journal_path) {
  ::signal(SIGXFSZ, SIG_IGN);
  struct stat st {};
  ::stat(journal_path.c_str(), &st);
  // The soft limit only, so it can be lifted again as freeing space would.
  rlimit cap{};
  ::getrlimit(RLIMIT_FSIZE, &cap);
  cap.rlim_cur = static_cast<rlim_t>(st.st_size);
  if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(99);
}
void uncap_journal_growth() {
  rlimit unlimited{};
  ::getrlimit(RLIMIT_FSIZE, &unlimited);
  unlimited.rlim_cur = unlimited.rlim_max;
  if (::setrlimit(RLIMIT_FSIZE, &unlimited) != 0) std::_Exit(98);
}

TEST_F(BrokerRestoreTest, ALeaseEndTheJournalCannotRecordKeepsItsNumberUntilItIsRecorded) {
  // The issue's first sequence: a lease ends while the disk is full, space
  // comes back, the same user asks again. The number of the unrecorded end
  // must not be handed out, or the journal holds two leases on it.
  const auto sequence = [&] {
    start_broker().durable()->set_group_commit(true);
    const auto first = acquire(kAlice, 1);
    if (first.status() != v1::OK || !broker_->commit().ok) std::_Exit(10);
    const std::uint32_t held = first.acquire().lease().display();
    cap_journal_growth(runtime_dir_ + "/" + kJournalName);
    const auto rel = release(kAlice, 1, first.acquire().lease().id());
    if (rel.status() != v1::OK) std::_Exit(11);  // an end is never refused...
    const auto rel_outcome = broker_->commit();
    if (rel_outcome.ok) std::_Exit(12);
    // ...nor acknowledged before it is recorded.
    if (broker_->core().reply_after_failed_commit(rel, rel_outcome.withdrawn).status() != v1::INTERNAL) std::_Exit(25);
    if (broker_->core().leases().find(first.acquire().lease().id())) std::_Exit(26);  // but it did end
    if (!broker_->core().allocator().is_leased(held)) std::_Exit(13);  // held until recorded
    const auto status = call(kAlice, 3, [](v1::Request& r) { r.mutable_status(); });
    if (status.status_reply().journal_problem().empty()) std::_Exit(14);
    if (status.status_reply().displays_awaiting_journal_size() != 1 ||
        status.status_reply().displays_awaiting_journal(0) != held)
      std::_Exit(15);
    // Meanwhile a new acquire is refused and never gets the held number.
    const auto refused = acquire(kAlice, 2);
    const auto refused_outcome = broker_->commit();
    if (refused_outcome.ok || broker_->core().reply_after_failed_commit(refused, refused_outcome.withdrawn).status() != v1::INTERNAL)
      std::_Exit(23);
    if (refused.acquire().lease().display() == held || broker_->core().leases().size() != 0) std::_Exit(24);
    // Space comes back; the retry writes the owed end and frees the number.
    uncap_journal_growth();
    broker_->core().retry_records();
    if (broker_->core().allocator().is_leased(held)) std::_Exit(16);
    if (!call(kAlice, 3, [](v1::Request& r) { r.mutable_status(); }).status_reply().journal_problem().empty())
      std::_Exit(17);
    // Every number, the old one included, may be handed out once each.
    std::set<std::uint32_t> got;
    for (int i = 0; i < 8; ++i) {
      const auto r = acquire(kAlice, 5);
      if (r.status() != v1::OK || !broker_->commit().ok) std::_Exit(18);
      got.insert(r.acquire().lease().display());
    }
    if (got.size() != 8) std::_Exit(19);
    // "kill -9 and restart": every acknowledged lease comes back, no number twice.
    const auto summary = restart();
    if (summary.waiting + summary.reaping != 8 || summary.dropped != 0) std::_Exit(20);
    std::set<std::uint32_t> after;
    for (const auto& l : journal_->loaded().leases)
      if (!after.insert(l.display()).second) std::_Exit(21);
    if (after != got) std::_Exit(22);
    std::_Exit(0);
  };
  EXPECT_EXIT(sequence(), ::testing::ExitedWithCode(0), "");
}

TEST_F(BrokerRestoreTest, AProcessReportTheJournalRefusesIsNotTrackedAndTheClientIsToldSo) {
  // The issue's second sequence: memory must not track what the journal
  // refused (nor the other way round).
  const auto sequence = [&] {
    start_broker().durable()->set_group_commit(true);
    const auto lease = acquire(kRoot, 1);
    if (lease.status() != v1::OK || !broker_->commit().ok) std::_Exit(10);
    const std::string id = lease.acquire().lease().id();
    const pid_t child = ::fork();
    if (child == 0) {
      ::pause();
      std::_Exit(0);
    }
    cap_journal_growth(runtime_dir_ + "/" + kJournalName);
    const auto reported = call(kRoot, 1, [&](v1::Request& r) {
      r.mutable_report_process()->set_lease_id(id);
      r.mutable_report_process()->set_pid(child);
      r.mutable_report_process()->set_role(v1::SESSION);
    });
    if (reported.status() != v1::OK) std::_Exit(11);  // answered only after the commit
    const auto outcome = broker_->commit();
    if (outcome.ok) std::_Exit(12);
    if (broker_->core().reply_after_failed_commit(reported, outcome.withdrawn).status() != v1::INTERNAL) std::_Exit(13);
    const auto* l = broker_->core().leases().find(id);
    if (!l || !l->processes.empty()) std::_Exit(14);  // rolled back
    // Without group commit the refusal is immediate and leaves nothing.
    broker_->durable()->set_group_commit(false);
    const auto at_once = call(kRoot, 1, [&](v1::Request& r) {
      r.mutable_report_process()->set_lease_id(id);
      r.mutable_report_process()->set_pid(child);
      r.mutable_report_process()->set_role(v1::SESSION);
    });
    if (at_once.status() != v1::INTERNAL || !broker_->core().leases().find(id)->processes.empty()) std::_Exit(15);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    uncap_journal_growth();
    const auto disk = journal_on_disk();
    if (disk.size() != 1 || disk[0].processes_size() != 0) std::_Exit(16);
    std::_Exit(0);
  };
  EXPECT_EXIT(sequence(), ::testing::ExitedWithCode(0), "");
}

TEST_F(BrokerRestoreTest, AReattachOrLoginTheJournalRefusesIsRolledBack) {
  const auto sequence = [&] {
    const auto j = recovered("mine", 706, kAlice, ::getpid());
    restore({j});
    broker_->durable()->set_group_commit(true);
    cap_journal_growth(runtime_dir_ + "/" + kJournalName);
    Caller other = kAlice;
    other.pid = 31777;
    const auto r = reattach(other, 42, "mine", j.reattach_token());
    if (r.status() != v1::OK) std::_Exit(10);
    const auto outcome = broker_->commit();
    if (outcome.ok || broker_->core().reply_after_failed_commit(r, outcome.withdrawn).status() != v1::INTERNAL) std::_Exit(11);
    const Lease* l = broker_->core().leases().find("mine");
    if (!l || !l->detached || l->holder_pid != ::getpid() || !broker_->core().leases().ids_for_connection(42).empty())
      std::_Exit(12);
    const auto login = call(kRoot, 7, [](v1::Request& req) { req.mutable_open_login()->set_uid(kBob.uid); });
    if (login.status() != v1::OK) std::_Exit(13);
    const auto login_outcome = broker_->commit();
    if (broker_->core().reply_after_failed_commit(login, login_outcome.withdrawn).status() != v1::INTERNAL) std::_Exit(14);
    uncap_journal_growth();
    // The count was rolled back: a logout now finds no session counted.
    const auto logout = call(kRoot, 7, [](v1::Request& req) {
      req.mutable_close_login()->set_uid(kBob.uid);
      req.mutable_close_login()->set_reap_leases(true);
    });
    if (logout.close_login().counted()) std::_Exit(15);
    std::_Exit(0);
  };
  EXPECT_EXIT(sequence(), ::testing::ExitedWithCode(0), "");
}

TEST_F(BrokerRestoreTest, LoginCountsAndReattachesSurviveARestart) {
  const auto j = recovered("mine", 706, kAlice, ::getpid());
  restore({j});
  Caller other = kAlice;
  other.pid = ::getppid();  // a live process other than the recorded holder
  ASSERT_EQ(reattach(other, 42, "mine", j.reattach_token()).status(), v1::OK);
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(call(kRoot, 7, [](v1::Request& req) { req.mutable_open_login()->set_uid(kBob.uid); }).status(), v1::OK);
  restart();
  ASSERT_TRUE(listed("mine"));
  EXPECT_EQ(listed("mine")->pid(), ::getppid()) << "the holder that reattached is the one a restart checks";
  const auto close = [&] {
    return call(kRoot, 7, [](v1::Request& req) {
      req.mutable_close_login()->set_uid(kBob.uid);
      req.mutable_close_login()->set_reap_leases(true);
    });
  };
  const auto first = close();
  EXPECT_TRUE(first.close_login().counted()) << "the count came back from the journal";
  EXPECT_EQ(first.close_login().login_sessions(), 1u);
  restart();
  EXPECT_EQ(close().close_login().login_sessions(), 0u) << "the logout was recorded too";
  EXPECT_FALSE(close().close_login().counted());
}

TEST_F(BrokerRestoreTest, AnOlderLeaseOnTheSameDisplayHasItsLiveProcessesReapedAndHoldsTheNumberMeanwhile) {
  reaper_ = std::make_unique<HoldingReaper>();
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    std::_Exit(0);
  }
  ASSERT_GT(child, 0);
  ProcessInfo info;
  ASSERT_TRUE(read_process(child, info));
  auto older = recovered("older", 704, kRoot, dead_pid());
  auto p = make_process(child);
  p.set_start_time(info.start_time);
  *older.add_processes() = p;
  restore({older, recovered("newer", 704, kAlice, dead_pid())});
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_EQ(reaper_->jobs.size(), 2u) << "the newer lease (holder gone) and the older one's live process";
  const auto& orphan = reaper_->jobs[0].first.lease_id == "older" ? reaper_->jobs[0].first : reaper_->jobs[1].first;
  EXPECT_EQ(orphan.lease_id, "older");
  EXPECT_TRUE(orphan.processes_only) << "the display's X lock and sockets are the newer lease's";
  ASSERT_EQ(orphan.processes.size(), 1u);
  EXPECT_EQ(orphan.processes[0].pid, child);
  EXPECT_FALSE(listed("older"));
  // Finish the newer lease first: the number waits for the older reap.
  auto jobs = std::move(reaper_->jobs);
  reaper_->jobs.clear();
  for (auto& j : jobs)
    if (j.first.lease_id == "newer") j.second(ReapOutcome{});
  EXPECT_TRUE(broker_->core().allocator().is_leased(704)) << "a process of the older lease may still live";
  for (auto& j : jobs)
    if (j.first.lease_id == "older") j.second(ReapOutcome{});
  EXPECT_FALSE(broker_->core().allocator().is_leased(704));
  EXPECT_TRUE(journal_on_disk().empty());
}

TEST_F(BrokerRestoreTest, WithoutAJournalTheBrokerWorksAndRestoresNothing) {
  start_broker(/*with_journal=*/false);
  const auto r = acquire(kAlice, 1);
  ASSERT_EQ(r.status(), v1::OK);
  EXPECT_FALSE(r.acquire().reattach_token().empty());
  struct stat st {};
  EXPECT_NE(::stat((runtime_dir_ + "/" + kJournalName).c_str(), &st), 0) << "journal=no writes no file";
}


// Issue 21: another user fills the runtime dir's filesystem to the last
// byte. The journal's appends land in the reserve it allocated at start-up;
// compaction waits for room for a file with a whole reserve; once space is
// back, compaction restores the reserve.
// A tmpfs of its own for each test (root only: it mounts one).
class LeaseJournalReserveTest : public ::testing::Test {
 protected:
  void mount_tmpfs(const char* size) {
    if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs";
    const std::string options = std::string("size=") + size;
    ASSERT_EQ(::mount("tmpfs", mount_point.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()), 0)
        << std::strerror(errno);
    mounted_ = true;
    dir.reset(::open(mount_point.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir);
  }
  void TearDown() override {
    dir.reset();
    if (mounted_) ::umount2(mount_point.path().c_str(), MNT_DETACH);
  }
  TempDir mount_point;
  UniqueFd dir;

 private:
  bool mounted_ = false;
};

TEST_F(LeaseJournalReserveTest, AppendsGoOnWhileSomebodyElseFillsTheFilesystem) {
  // Room for the journal with its reserve and a compacted file with its own.
  mount_tmpfs("24m");
  if (IsSkipped() || HasFatalFailure()) return;
  auto journal = std::make_unique<LeaseJournal>(dir.get(), mount_point.path());
  EXPECT_EQ(journal->reserve_problem(), "");
  EXPECT_EQ(journal->reserve_left(), LeaseJournal::kSpaceReserveBytes);

  const std::string filler = mount_point.path() + "/filler";
  const UniqueFd fill(::open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(fill);
  const std::string block(65536, 'x');
  int err = 0;
  while (err == 0)
    if (::write(fill.get(), block.data(), block.size()) < 0 && errno != EINTR) err = errno;
  ASSERT_EQ(err, ENOSPC);

  for (int i = 0; i < 2000; ++i) {
    const std::string id = "L" + std::to_string(i);
    ASSERT_TRUE(journal->lease_added(make_lease(id, 100 + i % 50))) << "pair " << i << ": " << std::strerror(errno);
    ASSERT_TRUE(journal->lease_removed(id)) << "pair " << i;
  }
  EXPECT_FALSE(journal->write_failing());
  EXPECT_LT(journal->reserve_left(), LeaseJournal::kSpaceReserveBytes);
  EXPECT_GT(journal->reserve_left(), 0u);
  EXPECT_FALSE(journal->compact({{make_lease("kept", 7)}, {}})) << "no room for a compacted file and its reserve";
  EXPECT_TRUE(journal->compaction_failed());
  EXPECT_FALSE(journal->write_failing()) << "a waiting compaction refuses nothing";
  ASSERT_TRUE(journal->lease_added(make_lease("kept", 7)));

  ASSERT_EQ(::unlink(filler.c_str()), 0);
  ASSERT_EQ(::ftruncate(fill.get(), 0), 0);
  EXPECT_TRUE(journal->compact({{make_lease("kept", 7)}, {}}));
  EXPECT_EQ(journal->reserve_left(), LeaseJournal::kSpaceReserveBytes) << "the compacted file has its reserve";
  journal.reset();
  LeaseJournal again(dir.get(), mount_point.path());
  ASSERT_EQ(again.loaded().leases.size(), 1u);
  EXPECT_EQ(again.loaded().leases[0].id(), "kept");
  EXPECT_EQ(again.loaded().dropped_bytes, 0u) << "the reserve past the end is not read as records";
}

TEST_F(LeaseJournalReserveTest, WithoutRoomForTheReserveTheJournalRunsWithoutOne) {
  mount_tmpfs("512k");  // smaller than the reserve
  if (IsSkipped() || HasFatalFailure()) return;
  LeaseJournal journal(dir.get(), mount_point.path());
  EXPECT_NE(journal.reserve_problem(), "");
  EXPECT_EQ(journal.reserve_left(), 0u);
  EXPECT_TRUE(journal.lease_added(make_lease("A", 100)));
  EXPECT_TRUE(journal.compact({{make_lease("A", 100)}, {}})) << "compaction needs no reserve then";
}

}  // namespace
}  // namespace xpra_broker
