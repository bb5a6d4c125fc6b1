// Attack 7, trusting the broker's own files too far: the lease journal
// names pids, uids and process groups the broker signals on recovery, and
// the runtime dir holds the socket and every user's directory. If another
// user can write either, or could have swapped it, the broker refuses to
// start (exit 78, "unsafe ...") instead of acting on it. Started as root
// without user=, the broker does not keep running as root: it switches to
// the packaged xpra-broker:xpra; only user=root keeps root.
//
// xpra-brokerd is started by hand here (the harness always passes --user).
// A private --x11-tmp-dir, displays 52500-52509.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

constexpr int kExitUnsafe = 78;  // EX_CONFIG: unsafe own files are a setup problem a restart cannot fix

class OwnFilesTest : public AdversarialTest {};

// Real, effective, saved and filesystem ids from a "Uid:" / "Gid:" line.
std::vector<unsigned> ids_of(const std::string& line) {
  std::istringstream in(line.substr(line.find(':') + 1));
  std::vector<unsigned> out;
  for (unsigned id; in >> id;) out.push_back(id);
  return out;
}

// A runtime dir the way a broker leaves it (started through the harness,
// one lease taken and released so the journal has records), then changed
// by `tamper`; then xpra-brokerd is started on it again.
BrokerdRun start_on_tampered_runtime_dir(const std::string& x11, const std::function<void(const std::string&)>& tamper) {
  integration::BrokerProcess first({"--displays=52500-52504", "--x11-tmp-dir=" + x11});
  first.start(60s);
  {
    auto conn = first.connect(10s);
    v1::Response r;
    if (conn.call(acquire_request("journal-record"), r) != BrokerConnection::Error::none || r.status() != v1::OK)
      throw std::runtime_error("setup: acquire failed: " + r.message());
  }
  // The lease ends with the connection; wait until it is gone.
  integration::wait_until([&] {
    v1::Request list;
    list.mutable_list()->set_all(true);
    return first.call(list).list().leases_size() == 0;
  });
  first.stop();
  tamper(first.runtime_dir());
  return run_brokerd({"--user=xpra-broker", "--group=xpra", "--runtime-dir=" + first.runtime_dir(),
                      "--socket=" + first.socket_path(), "--displays=52500-52504", "--x11-tmp-dir=" + x11},
                     first.socket_path());
}

void must_chmod(const std::string& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0) throw std::runtime_error("chmod " + path);
}
void must_chown(const std::string& path, const std::string& user) {
  const auto account = integration::user_account(user);
  if (::lchown(path.c_str(), account.uid, account.gid) != 0) throw std::runtime_error("chown " + path);
}

TEST_F(OwnFilesTest, AnUnsafeJournalOrRuntimeDirIsRefused) {
  const std::string x11 = private_x11_dir();
  struct Case {
    std::string what;
    std::string expect;  // in the message
    std::function<void(const std::string& run)> tamper;
  };
  const std::vector<Case> cases = {
      {"a group- and other-writable journal", "unsafe lease journal",
       [](const std::string& run) { must_chmod(run + "/leases.journal", 0666); }},
      {"a journal owned by another user", "unsafe lease journal",
       [](const std::string& run) {
         must_chown(run + "/leases.journal", kMallory);
         must_chmod(run + "/leases.journal", 0644);
       }},
      {"a hard-linked journal", "unsafe lease journal",
       [](const std::string& run) {
         // The second name sits next to the runtime dir (same file system)
         // and goes with the harness's temporary directory.
         if (::link((run + "/leases.journal").c_str(), (run + "/../journal-second-name").c_str()) != 0)
           throw std::runtime_error("link");
       }},
      {"a group-writable runtime dir", "unsafe runtime dir", [](const std::string& run) { must_chmod(run, 0775); }},
      {"an other-writable runtime dir", "unsafe runtime dir", [](const std::string& run) { must_chmod(run, 0757); }},
      {"a runtime dir owned by another user", "unsafe runtime dir",
       [](const std::string& run) { must_chown(run, kMallory); }},
      {"a runtime dir that is a symlink", "unsafe runtime dir",
       [](const std::string& run) {
         std::filesystem::rename(run, run + "-real");
         std::filesystem::create_directory_symlink(run + "-real", run);
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    bool journal_there = true;
    const auto run = start_on_tampered_runtime_dir(x11, [&](const std::string& dir) {
      journal_there = lifecycle::path_exists(dir + "/leases.journal");
      c.tamper(dir);
    });
    ASSERT_TRUE(journal_there) << "the broker left no leases.journal to tamper with";
    const bool refused = !run.served && run.exit_code == kExitUnsafe && run.output.find(c.expect) != std::string::npos;
    EXPECT_TRUE(refused) << "on " << c.what << " xpra-brokerd must exit " << kExitUnsafe << " saying '" << c.expect
                         << "'; " << run.describe();
  }
}

TEST_F(OwnFilesTest, StartedAsRootWithoutUserItRunsAsThePackagedUserAndStaysRootOnlyWhenTold) {
  const std::string x11 = private_x11_dir();
  const uid_t service_uid = integration::uid_of("xpra-broker");
  const gid_t service_gid = integration::gid_of_group("xpra");
  {
    integration::TempDir base("xpb-adv-root", 0755);
    const std::string run = base.path() + "/run";
    const auto r = run_brokerd({"--runtime-dir=" + run, "--socket=" + run + "/broker.sock", "--displays=52505-52509",
                                "--x11-tmp-dir=" + x11},
                               run + "/broker.sock");
    ASSERT_TRUE(r.served) << "started as root without user=: " << r.describe();
    EXPECT_EQ(ids_of(r.uid_line), std::vector<unsigned>(4, service_uid))
        << "started as root without user=, it runs with " << r.uid_line << " (xpra-broker is " << service_uid << ")";
    EXPECT_EQ(ids_of(r.gid_line), std::vector<unsigned>(4, service_gid))
        << "started as root without user=, it runs with " << r.gid_line << " (xpra is " << service_gid << ")";
  }
  {
    integration::TempDir base("xpb-adv-root", 0755);
    const std::string run = base.path() + "/run";
    const auto r = run_brokerd({"--user=root", "--runtime-dir=" + run, "--socket=" + run + "/broker.sock",
                                "--displays=52505-52509", "--x11-tmp-dir=" + x11},
                               run + "/broker.sock");
    ASSERT_TRUE(r.served) << "started with user=root: " << r.describe();
    EXPECT_EQ(ids_of(r.uid_line), std::vector<unsigned>(4, 0u)) << "user=root: " << r.uid_line;
    bool warned = false;
    for (const auto& w : r.status.warnings()) warned = warned || w.find("root") != std::string::npos;
    EXPECT_TRUE(warned) << "status does not warn that the broker runs as root";
    EXPECT_NE(r.output.find("root"), std::string::npos) << "the log does not warn that it runs as root: " << r.describe();
  }
}

}  // namespace
}  // namespace xpra_broker::adversarial
