// xpra_command.h: `exec --xpra` checks an `xpra start` command before it
// takes a lease and completes it with the display, --socket-dir and
// --daemon=no afterwards.
#include "xpra_command.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace xpra_broker::client {
namespace {

using Args = std::vector<std::string>;

const std::string kDir = "/run/xpra/1000";

Args complete(const Args& command, std::uint32_t display = 950) {
  const auto check = check_xpra_command(command);
  EXPECT_EQ(check.error, "") << "the command should be accepted";
  return complete_xpra_command(command, check.shape, display, kDir);
}

std::string refusal(const Args& command) {
  const auto check = check_xpra_command(command);
  EXPECT_NE(check.error, "") << "the command should be refused";
  EXPECT_NE(check.hint, "") << "a refusal says what to write instead";
  return check.error;
}

TEST(XpraCommandTest, DisplaySocketDirAndNoDaemonGoRightAfterTheSubcommand) {
  EXPECT_EQ(complete({"xpra", "start"}), (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no"}));
  EXPECT_EQ(complete({"xpra", "start-desktop", "--start=xterm"}),
            (Args{"xpra", "start-desktop", ":950", "--socket-dir=" + kDir, "--daemon=no", "--start=xterm"}));
  EXPECT_EQ(complete({"xpra", "start", "--html=on", "--bind-tcp=0.0.0.0:14500"}, 7),
            (Args{"xpra", "start", ":7", "--socket-dir=" + kDir, "--daemon=no", "--html=on",
                  "--bind-tcp=0.0.0.0:14500"}));
}

TEST(XpraCommandTest, TheJupyterProxyCommandNeedsNoPlaceholder) {
  // What jupyter-xprahtml5-proxy runs, minus the placeholders it cannot
  // keep through str.format.
  const Args proxy = {"/usr/bin/xpra", "start", "--html=on", "--bind=/tmp/xpra-jh/xpra-server,auth=none",
                      "--start=xterm", "--exit-with-children=no"};
  EXPECT_EQ(complete(proxy, 951),
            (Args{"/usr/bin/xpra", "start", ":951", "--socket-dir=" + kDir, "--daemon=no", "--html=on",
                  "--bind=/tmp/xpra-jh/xpra-server,auth=none", "--start=xterm", "--exit-with-children=no"}));
}

TEST(XpraCommandTest, OptionsBeforeTheSubcommandStayThere) {
  EXPECT_EQ(complete({"xpra", "--html=on", "start"}),
            (Args{"xpra", "--html=on", "start", ":950", "--socket-dir=" + kDir, "--daemon=no"}));
}

TEST(XpraCommandTest, ADisplayPlaceholderIsKeptAndNothingInserted) {
  EXPECT_EQ(complete({"xpra", "start", ":{display}"}),
            (Args{"xpra", "start", "--socket-dir=" + kDir, "--daemon=no", ":950"}));
  EXPECT_EQ(complete({"xpra", "start", "--html=on", "{display}"}),
            (Args{"xpra", "start", "--socket-dir=" + kDir, "--daemon=no", "--html=on", "950"}));
}

TEST(XpraCommandTest, AGivenSocketDirIsKept) {
  EXPECT_EQ(complete({"xpra", "start", "--socket-dir=/tmp/mine"}),
            (Args{"xpra", "start", ":950", "--daemon=no", "--socket-dir=/tmp/mine"}));
  EXPECT_EQ(complete({"xpra", "start", "--socket-dir", "/tmp/mine"}),
            (Args{"xpra", "start", ":950", "--daemon=no", "--socket-dir", "/tmp/mine"}));
  EXPECT_EQ(complete({"xpra", "start", "--socket-dir={runtime_dir}"}),
            (Args{"xpra", "start", ":950", "--daemon=no", "--socket-dir=" + kDir}));
  // --socket-dirs is another option: the lease's dir is still added.
  EXPECT_EQ(complete({"xpra", "start", "--socket-dirs=/tmp"}),
            (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no", "--socket-dirs=/tmp"}));
}

TEST(XpraCommandTest, EveryWayOfSayingNoDaemonIsKept) {
  for (const std::string no : {"--daemon=no", "--daemon=NO", "--daemon=false", "--daemon=0", "--daemon=off",
                               "--no-daemon"})
    EXPECT_EQ(complete({"xpra", "start", no}), (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, no})) << no;
}

TEST(XpraCommandTest, EveryDaemonizingFormIsRefused) {
  for (const std::string yes : {"--daemon", "--daemon=yes", "--daemon=YES", "--daemon=true", "--daemon=1",
                                "--daemon=on", "--daemon=auto", "--daemon="}) {
    EXPECT_NE(refusal({"xpra", "start", yes}).find("daemon"), std::string::npos) << yes;
    EXPECT_NE(refusal({"xpra", yes, "start"}), "") << yes << " before the subcommand";
  }
  // A later --daemon=yes wins in xpra: refused even after a --daemon=no.
  refusal({"xpra", "start", "--daemon=no", "--daemon=yes"});
}

TEST(XpraCommandTest, PlaceholdersElsewhereAreStillReplaced) {
  EXPECT_EQ(complete({"xpra", "start", "--bind={runtime_dir}/xpra-server,auth=none", "--title=s{display}"}),
            (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no", "--bind=" + kDir +
                  "/xpra-server,auth=none", "--title=s950"}));
}

TEST(XpraCommandTest, TheFirstWordMustBeXpra) {
  for (const Args& cmd : {Args{"Xvfb", "start"}, Args{"/usr/bin/xpra2", "start"}, Args{"xpra-launcher", "start"},
                          Args{"/usr/bin/xpra/", "start"}, Args{"python3", "/usr/bin/xpra", "start"}, Args{""},
                          Args{}})
    refusal(cmd);
  EXPECT_EQ(check_xpra_command({"/usr/local/bin/xpra", "start"}).error, "");
  EXPECT_EQ(check_xpra_command({"./xpra", "start-desktop"}).error, "");
}

TEST(XpraCommandTest, OnlyStartAndStartDesktop) {
  for (const Args& cmd : {Args{"xpra"}, Args{"xpra", "--html=on"}, Args{"xpra", "attach"}, Args{"xpra", "upgrade"},
                          Args{"xpra", "shadow"}, Args{"xpra", "proxy"}, Args{"xpra", "Start"}})
    refusal(cmd);
}

TEST(XpraCommandTest, ALiteralDisplayIsRefused) {
  // The broker picks the display: a number of the user's own would run
  // xpra outside the lease.
  for (const std::string display : {":7", ":100", ":7.0"})
    EXPECT_NE(refusal({"xpra", "start", "--html=on", display}).find(display), std::string::npos) << display;
  // An option's value is no display, nor is what xpra would reject anyway.
  EXPECT_EQ(check_xpra_command({"xpra", "start", "--bind-tcp=:14500"}).error, "");
  EXPECT_EQ(check_xpra_command({"xpra", "start", ":abc"}).error, "") << "not a display: xpra's to judge";
}

Args complete_for(int xpra_major, const Args& command) {
  const auto check = check_xpra_command(command);
  EXPECT_EQ(check.error, "");
  return complete_xpra_command(command, check.shape, 950, kDir, xpra_major);
}

TEST(XpraCommandTest, Xpra5AndLaterGetTheSessionDirInTheLeaseAndNoTakeover) {
  for (int major : {5, 6})
    EXPECT_EQ(complete_for(major, {"xpra", "start", "--html=on"}),
              (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no", "--sessions-dir=" + kDir,
                    "--use-display=no", "--systemd-run=no", "--html=on"}))
        << major;
  // 3.1 (and a version that could not be told) would refuse both options.
  for (int major : {0, 3})
    EXPECT_EQ(complete_for(major, {"xpra", "start"}),
              (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no"}))
        << major;
}

TEST(XpraCommandTest, TheUsersOwnSessionsDirUseDisplayAndSystemdRunAreKept) {
  EXPECT_EQ(complete_for(5, {"xpra", "start", "--sessions-dir=/srv/s", "--use-display=auto", "--systemd-run=yes"}),
            (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no", "--sessions-dir=/srv/s",
                  "--use-display=auto", "--systemd-run=yes"}));
  EXPECT_EQ(complete_for(6, {"xpra", "start", "--use-display"}),
            (Args{"xpra", "start", ":950", "--socket-dir=" + kDir, "--daemon=no", "--sessions-dir=" + kDir,
                  "--systemd-run=no", "--use-display"}));
}

TEST(XpraCommandTest, TheMajorVersionIsReadFromModuleLinesAndVersionOutput) {
  EXPECT_EQ(xpra_major_of("__version__ = \"3.1.3\""), 3);
  EXPECT_EQ(xpra_major_of("__version__ = \"5.0.8\""), 5);
  EXPECT_EQ(xpra_major_of("xpra v6.5.3\n"), 6);
  EXPECT_EQ(xpra_major_of("xpra v6.5.3-r0 beta"), 6);
  EXPECT_EQ(xpra_major_of("Python 3.11.2"), 0);
  EXPECT_EQ(xpra_major_of(""), 0);
  EXPECT_EQ(xpra_major_of("__version__ = \"12345678.0\""), 0) << "no absurd numbers";
}

// A private build as its README runs it: PYTHONPATH names its modules.
TEST(XpraCommandTest, TheVersionComesFromTheModulePythonWouldImport) {
  const std::string dir = ::testing::TempDir() + "xpra-version-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir + "/bin");
  std::filesystem::create_directories(dir + "/lib/xpra");
  {
    std::ofstream script(dir + "/bin/xpra");
    // Fails if run: the module's line must be enough.
    script << "#!/bin/sh\nexit 1\n";
  }
  ::chmod((dir + "/bin/xpra").c_str(), 0755);
  std::ofstream(dir + "/lib/xpra/__init__.py") << "# Xpra\n__version_info__ = (6, 5, 3)\n__version__ = \"6.5.3\"\n";
  const char* old = std::getenv("PYTHONPATH");
  const std::string saved = old ? old : "";
  ::setenv("PYTHONPATH", ("/nonexistent:" + dir + "/lib").c_str(), 1);
  EXPECT_EQ(xpra_version(dir + "/bin/xpra"), 6);
  // No module found and no known layout: `xpra --version` answers.
  {
    std::ofstream script(dir + "/bin/xpra");
    script << "#!/bin/sh\necho 'xpra v5.0.8'\n";
  }
  ::setenv("PYTHONPATH", "/nonexistent", 1);
  EXPECT_EQ(xpra_version(dir + "/bin/xpra"), 5);
  if (old)
    ::setenv("PYTHONPATH", saved.c_str(), 1);
  else
    ::unsetenv("PYTHONPATH");
  EXPECT_EQ(xpra_version(dir + "/bin/no-such-xpra"), 0);
  // Debian 12's own (scripts/install-deps.sh installs it), read from
  // /usr/lib/python3/dist-packages without running it.
  EXPECT_EQ(xpra_version("/usr/bin/xpra"), 3);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace xpra_broker::client
