// xpra_config.h: Xpra 3.1's own config reading (read_config, conf.d order,
// dict.update merge, socket-dirs split at ':'), and which socket dirs are
// shared (the broker's) or per-user (each user's own).
#include "host/xpra_config.h"

#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"

namespace xpra_broker {
namespace {

using Values = std::vector<std::string>;
using xpra_broker::testing::TempDir;

// ---- one file: read_config() -------------------------------------------------

TEST(XpraConfParseTest, KeyValueLinesAreStrippedAroundTheFirstEquals) {
  const auto v = parse_xpra_conf("socket-dirs = /tmp\n  socket-dir=/srv/x  \nstart = a=b\n");
  EXPECT_EQ(v.at("socket-dirs"), Values{"/tmp"});
  EXPECT_EQ(v.at("socket-dir"), Values{"/srv/x"});
  EXPECT_EQ(v.at("start"), Values{"a=b"});
}

TEST(XpraConfParseTest, CommentsStartWithHashOrBangAfterLeadingSpace) {
  const auto v = parse_xpra_conf("# socket-dirs = /a\n   ! socket-dirs = /b\n#socket-dirs=/c\nsocket-dirs = /d # not a comment\n");
  EXPECT_EQ(v.at("socket-dirs"), Values{"/d # not a comment"}) << "a '#' inside a value is part of it";
  EXPECT_EQ(v.size(), 1u);
}

TEST(XpraConfParseTest, ARepeatedKeyCollectsEveryValueInOrder) {
  // As Debian's /etc/xpra/conf.d/10_network.conf writes it.
  const auto v = parse_xpra_conf(
      "#socket-dirs = /tmp\nsocket-dirs = /run/user/$UID/xpra\nsocket-dirs = /run/xpra\nsocket-dirs = ~/.xpra\n");
  EXPECT_EQ(v.at("socket-dirs"), (Values{"/run/user/$UID/xpra", "/run/xpra", "~/.xpra"}));
}

TEST(XpraConfParseTest, AnEmptyFirstValueIsReplacedNotExtended) {
  // Xpra appends only to a "truthy" value.
  EXPECT_EQ(parse_xpra_conf("socket-dirs =\nsocket-dirs = /a\n").at("socket-dirs"), Values{"/a"});
  EXPECT_EQ(parse_xpra_conf("socket-dirs = /a\nsocket-dirs =\n").at("socket-dirs"), (Values{"/a", ""}));
}

TEST(XpraConfParseTest, LinesWithoutAKeyAreIgnored) {
  const auto v = parse_xpra_conf("just words\n= /tmp\n  =x\nsocket-dirs = /a\n");
  EXPECT_EQ(v.size(), 1u);
  EXPECT_EQ(v.at("socket-dirs"), Values{"/a"});
}

TEST(XpraConfParseTest, ABackslashJoinsTheNextKeptLineWithASpace) {
  EXPECT_EQ(parse_xpra_conf("socket-dirs = /a:\\\n/b\n").at("socket-dirs"), Values{"/a: /b"});
  // Comments and blank lines are dropped before joining: the next *kept*
  // line continues it.
  EXPECT_EQ(parse_xpra_conf("socket-dirs = /a\\\n\n# note\n:/b\n").at("socket-dirs"), Values{"/a :/b"});
  // Trailing space after the backslash is stripped first, so it still joins.
  EXPECT_EQ(parse_xpra_conf("socket-dirs = /a\\   \n:/b\n").at("socket-dirs"), Values{"/a :/b"});
  // A backslash on the last line: what was collected still counts.
  EXPECT_EQ(parse_xpra_conf("socket-dirs = /a\\").at("socket-dirs"), Values{"/a"});
}

TEST(XpraConfParseTest, CrlfAndTabs) {
  EXPECT_EQ(parse_xpra_conf("socket-dirs\t=\t/a\r\nsocket-dir = /b\r\n").at("socket-dirs"), Values{"/a"});
}

// ---- several files: read_xpra_conf() and read_xpra_defaults() ----------------

TEST(XpraConfMergeTest, ALaterFileReplacesTheWholeList) {
  const auto s = merge_xpra_conf({{"/etc/xpra/conf.d/10_network.conf", "socket-dirs = /run/xpra\nsocket-dirs = ~/.xpra\n"},
                                  {"/etc/xpra/conf.d/zz.conf", "socket-dirs = /srv/shared\n"},
                                  {"/etc/xpra/xpra.conf", "start = xterm\n"}});
  EXPECT_EQ(s.socket_dirs.values, Values{"/srv/shared"});
  EXPECT_EQ(s.socket_dirs.source, "/etc/xpra/conf.d/zz.conf");
}

TEST(XpraConfMergeTest, WithoutAnySettingXprasBuiltInDefaultApplies) {
  const auto s = merge_xpra_conf({{"/etc/xpra/xpra.conf", "start = xterm\n"}});
  EXPECT_EQ(s.socket_dirs.values, xpra_default_socket_dirs());
  EXPECT_EQ(s.socket_dirs.source, "");
  EXPECT_TRUE(s.socket_dir.values.empty());
}

TEST(XpraConfMergeTest, SocketDirRepeatedInOneFileIsDroppedAsXpraDoes) {
  const auto s = merge_xpra_conf({{"/a.conf", "socket-dir = /x\nsocket-dir = /y\n"}});
  EXPECT_TRUE(s.socket_dir.values.empty());
  ASSERT_EQ(s.notes.size(), 1u);
  EXPECT_NE(s.notes[0].find("/a.conf"), std::string::npos);
  // In two files the later one wins, no note.
  const auto t = merge_xpra_conf({{"/a.conf", "socket-dir = /x\n"}, {"/b.conf", "socket-dir = /y\n"}});
  EXPECT_EQ(t.socket_dir.values, Values{"/y"});
  EXPECT_TRUE(t.notes.empty());
}

// ---- the directories ------------------------------------------------------------

std::vector<std::string> paths(const std::vector<XpraSocketDir>& dirs, bool per_user) {
  std::vector<std::string> out;
  for (const auto& d : dirs)
    if (d.per_user == per_user) out.push_back(d.path);
  return out;
}

TEST(XpraSocketDirsTest, PerUserDirsAreTheUsersOwn) {
  for (const std::string dir : {"~/.xpra", "~bob/.xpra", "$XDG_RUNTIME_DIR/xpra", "/run/user/$UID/xpra",
                                "/home/${USER}/x", "/tmp/$USERNAME", "/srv/$GID", "relative/dir", ".", ""})
    EXPECT_TRUE(xpra_dir_is_per_user(dir)) << dir;
  for (const std::string dir : {"/tmp", "/run/xpra", "/srv/xpra-shared", "/a/~b", "/"})
    EXPECT_FALSE(xpra_dir_is_per_user(dir)) << dir;
}

TEST(XpraSocketDirsTest, DebiansDefaultConfigHasOneSharedDir) {
  const auto s = merge_xpra_conf({{"/etc/xpra/conf.d/10_network.conf",
                                   "socket-dirs = /run/user/$UID/xpra\nsocket-dirs = /run/xpra\nsocket-dirs = ~/.xpra\n"}});
  const auto dirs = xpra_socket_dirs(s, {});
  EXPECT_EQ(paths(dirs, false), Values{"/run/xpra"});
  EXPECT_EQ(paths(dirs, true), (Values{"/run/user/$UID/xpra", "~/.xpra"}));
  for (const auto& d : dirs) EXPECT_EQ(d.source, "/etc/xpra/conf.d/10_network.conf");
}

TEST(XpraSocketDirsTest, ValuesAreSplitAtColonsAndTidied) {
  const auto s = merge_xpra_conf({{"/x.conf", "socket-dirs = /tmp:/srv//shared/:~/.xpra\nsocket-dirs = /a/./b::\n"}});
  EXPECT_EQ(paths(xpra_socket_dirs(s, {}), false), (Values{"/tmp", "/srv/shared", "/a/b"}));
}

TEST(XpraSocketDirsTest, SplitPartsKeepTheirSpacesAsXpraDoes) {
  // "/a\<newline>:/b" joins to "/a :/b": Xpra's first dir is "/a " (with
  // the space), another directory than /a.
  const auto s = merge_xpra_conf({{"/x.conf", "socket-dirs = /a\\\n:/b\n"}});
  EXPECT_EQ(paths(xpra_socket_dirs(s, {}), false), (Values{"/a ", "/b"}));
}

TEST(XpraSocketDirsTest, SocketDirComesFirstThenSocketDirsThenTheBrokersOwnWithoutRepeats) {
  const auto s = merge_xpra_conf({{"/x.conf", "socket-dir = /srv/one\nsocket-dirs = /tmp:/srv/one/\n"}});
  const auto dirs = xpra_socket_dirs(s, {"/srv/extra", "/tmp"});
  EXPECT_EQ(paths(dirs, false), (Values{"/srv/one", "/tmp", "/srv/extra"}));
  EXPECT_EQ(dirs[0].source, "/x.conf");
  EXPECT_EQ(dirs[2].source, "xpra-socket-dirs");
}

TEST(XpraSocketDirsTest, TheBuiltInDefaultSaysSo) {
  const auto dirs = xpra_socket_dirs(merge_xpra_conf({}), {});
  EXPECT_EQ(paths(dirs, false), Values{"/run/xpra"});
  for (const auto& d : dirs) EXPECT_EQ(d.source, "xpra built-in default");
}

TEST(XpraSocketDirsTest, TidyDirPath) {
  EXPECT_EQ(tidy_dir_path("/"), "/");
  EXPECT_EQ(tidy_dir_path("//"), "/");
  EXPECT_EQ(tidy_dir_path("/tmp/"), "/tmp");
  EXPECT_EQ(tidy_dir_path("/a//b/./c"), "/a/b/c");
  EXPECT_EQ(tidy_dir_path("/a/../b"), "/a/../b") << "'..' is left to the filesystem";
  EXPECT_EQ(tidy_dir_path("~/.xpra/"), "~/.xpra/") << "per-user paths are shown as written";
}

// ---- reading the files ----------------------------------------------------------

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(XpraConfigFilesTest, ConfDInSortedOrderThenXpraConfPerDirInTheGivenOrder) {
  TempDir tmp;
  const std::string a = tmp.path() + "/etc-xpra", b = tmp.path() + "/local-xpra";
  for (const auto& d : {a, a + "/conf.d", b, b + "/conf.d"}) ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  write(a + "/conf.d/20_b.conf", "socket-dirs = /from-20\n");
  write(a + "/conf.d/10_a.conf", "socket-dirs = /from-10\n");
  write(a + "/conf.d/99_not-conf.txt", "socket-dirs = /never\n");
  write(a + "/conf.d/.conf", "socket-dir = /dot-conf\n");
  ASSERT_EQ(::mkdir((a + "/conf.d/30_dir.conf").c_str(), 0755), 0);  // not a file: skipped
  write(a + "/xpra.conf", "start = xterm\n");
  write(b + "/conf.d/zz.conf", "socket-dirs = /from-local\n");
  std::vector<std::string> problems;
  const auto files = read_xpra_config_files({a, tmp.path() + "/missing", b}, problems);
  std::vector<std::string> order;
  for (const auto& f : files) order.push_back(f.path.substr(tmp.path().size()));
  EXPECT_EQ(order, (Values{"/etc-xpra/conf.d/.conf", "/etc-xpra/conf.d/10_a.conf", "/etc-xpra/conf.d/20_b.conf",
                           "/etc-xpra/xpra.conf", "/local-xpra/conf.d/zz.conf"}));
  EXPECT_TRUE(problems.empty());
  const auto s = merge_xpra_conf(files);
  EXPECT_EQ(s.socket_dirs.values, Values{"/from-local"});
  EXPECT_EQ(s.socket_dir.values, Values{"/dot-conf"});
}

TEST(XpraConfigFilesTest, AnUnreadableFileIsReportedAndSkipped) {
  TempDir tmp;
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((tmp.path() + "/conf.d").c_str(), 0755), 0);
  write(tmp.path() + "/conf.d/a.conf", "socket-dirs = /x\n");
  ASSERT_EQ(::chmod((tmp.path() + "/conf.d/a.conf").c_str(), 0), 0);
  // Root reads every file: the reading is done as nobody, in a child, when
  // the test runs as root (CI).
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0))
      ::_exit(2);
    std::vector<std::string> problems;
    const bool nothing_read = read_xpra_config_files({tmp.path()}, problems).empty();
    ::_exit(nothing_read ? (problems.size() == 1u ? 0 : 3) : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 2) << "could not become nobody";
  EXPECT_NE(WEXITSTATUS(status), 1) << "the unreadable file was read";
  EXPECT_NE(WEXITSTATUS(status), 3) << "the unreadable file was not reported as one problem";
}

}  // namespace
}  // namespace xpra_broker
