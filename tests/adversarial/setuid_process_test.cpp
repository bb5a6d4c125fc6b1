// Attack: a reported process that stops being the lease user's. alice's
// command execs a setuid-root program that takes uid 0 (real, effective and
// saved): it keeps its pid, and alice's own `kill` now gets EPERM. Reported
// while it was hers, it must not be signalled through the broker's CAP_KILL
// when her lease ends: the reaper reads its uids again, behind its pidfd,
// just before each signal.
//
// A private --x11-tmp-dir, displays 52600-52609.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "adversarial_support.h"

namespace xpra_broker::adversarial {
namespace {

class SetuidProcessTest : public AdversarialTest {};

// The real uid of `pid`, from /proc (nullopt when gone).
std::optional<uid_t> real_uid_of(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Uid:", 0) == 0) return static_cast<uid_t>(std::stoul(line.substr(4)));
  return std::nullopt;
}

TEST_F(SetuidProcessTest, AReportedProcessThatBecameRootIsNotSignalledWhenTheLeaseEnds) {
  const uid_t alice = integration::uid_of(kAlice);
  const gid_t alice_group = integration::user_account(kAlice).gid;
  // The setuid program, executable by alice alone (and root), for this test
  // only: a directory 0750 root:<alice's group>, the program 4750 root.
  integration::TempDir setuid_dir("xpb-adv-setuid", 0750);
  const std::string dir = setuid_dir.path();
  ASSERT_EQ(::chown(dir.c_str(), 0, alice_group), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0750), 0);
  const std::string program = dir + "/become-root";
  std::filesystem::copy_file(XPB_BECOME_ROOT_PATH, program);
  ASSERT_EQ(::chown(program.c_str(), 0, alice_group), 0);
  ASSERT_EQ(::chmod(program.c_str(), 04750), 0);

  start_broker({"--displays=52600-52609", "--x11-tmp-dir=" + private_x11_dir(),
                "--allowed-groups=" + std::string(kAllowedGroup), "--reap-grace-ms=500"});
  auto client = spawn_client(kAlice, {"exec", "--purpose", "setuid", "--", program});
  std::optional<v1::Lease> lease;
  pid_t rooted = 0;
  ASSERT_TRUE(integration::wait_until(
      [&] {
        for (const auto& l : leases())
          if (l.uid() == alice && l.process_pids_size() > 0) lease = l;
        // The command is reported last (after the client's keeper).
        if (lease) rooted = lease->process_pids(lease->process_pids_size() - 1);
        return (rooted > 0 && real_uid_of(rooted) == 0u) || !client.running();
      },
      60s, 50ms))
      << "the command did not become root: " << client.terminate().describe();
  // The premise: alice herself can no longer signal it.
  const auto own_kill = integration::run_as(kAlice, {"kill", "-TERM", std::to_string(rooted)});
  EXPECT_NE(own_kill.exit_code, 0) << own_kill.describe();

  const auto released = broker().client_as("root", {"release", lease->id()});
  EXPECT_EQ(released.exit_code, 0) << released.describe();
  EXPECT_TRUE(integration::wait_until([&] { return leases().empty(); }, 60s)) << "the lease did not end";
  EXPECT_TRUE(integration::process_running(rooted))
      << "the broker signalled a process that is no longer the lease user's (uid 0 now)";
  EXPECT_NE(broker().log().find("pid " + std::to_string(rooted) + " is no longer uid " + std::to_string(alice) +
                                "'s (a setuid program?); not signalled"),
            std::string::npos)
      << broker().log();
  ::kill(rooted, SIGKILL);
  client.terminate();
}

}  // namespace
}  // namespace xpra_broker::adversarial
