// query_commands.h: the atomic write behind `metrics --output FILE`, which
// node-exporter's textfile collector reads while the timer rewrites it.
#include "query_commands.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace xpra_broker::client {
namespace {

using xpra_broker::testing::Contains;
using xpra_broker::testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (const dirent* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
  ::closedir(d);
  return out;
}

TEST(WriteFileAtomicallyTest, WritesTheContentWithTheModeWhateverTheUmask) {
  TempDir dir;
  const std::string path = dir.path() + "/xpra_broker.prom";
  const mode_t old = ::umask(077);
  const std::string error = write_file_atomically(path, "a 1\n", 0644);
  ::umask(old);
  ASSERT_EQ(error, "");
  EXPECT_EQ(slurp(path), "a 1\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"xpra_broker.prom"}) << "no temporary file left";
}

TEST(WriteFileAtomicallyTest, ReplacesAnOldFileByRenameSoAReaderKeepsTheOldOne) {
  TempDir dir;
  const std::string path = dir.path() + "/xpra_broker.prom";
  ASSERT_EQ(write_file_atomically(path, "old 1\n", 0644), "");
  std::ifstream reader(path);  // opened before the replacement
  ASSERT_EQ(write_file_atomically(path, "new 2\n", 0644), "");
  std::stringstream seen;
  seen << reader.rdbuf();
  EXPECT_EQ(seen.str(), "old 1\n") << "the old inode is intact, not rewritten in place";
  EXPECT_EQ(slurp(path), "new 2\n");
  EXPECT_EQ(entries(dir.path()).size(), 1u);
}

TEST(WriteFileAtomicallyTest, AMissingDirectoryIsReportedAndNothingIsLeft) {
  TempDir dir;
  const std::string error = write_file_atomically(dir.path() + "/missing/xpra_broker.prom", "a 1\n", 0644);
  EXPECT_TRUE(Contains(error, "missing"));
  EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(WriteFileAtomicallyTest, ATargetThatIsADirectoryFailsAndTheTemporaryFileIsRemoved) {
  TempDir dir;
  const std::string path = dir.path() + "/xpra_broker.prom";
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  const std::string error = write_file_atomically(path, "a 1\n", 0644);
  EXPECT_TRUE(Contains(error, "rename"));
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"xpra_broker.prom"});
}

}  // namespace
}  // namespace xpra_broker::client

namespace xpra_broker::client {
namespace {

// `list`'s columns fit the data: a 21-character user name neither breaks
// the row nor shifts the columns after it; the legend is optional.
TEST(FormatTableTest, ColumnsAreAsWideAsTheirWidestCell) {
  const std::vector<std::vector<std::string>> rows = {
      {"LEASE", "DISPLAY", "USER", "SINCE", "PURPOSE"},
      {"a1", ":100", "a-twenty-one-char-usr", "2026-12-07T02:13:00+0000", "demo session 1"},
      {"b2", ":1000", "bob", "2026-12-07T02:14:00+0000", ""},
  };
  const std::string table = format_table(rows, true);
  EXPECT_EQ(table,
            "LEASE  DISPLAY  USER                   SINCE                     PURPOSE\n"
            "a1     :100     a-twenty-one-char-usr  2026-12-07T02:13:00+0000  demo session 1\n"
            "b2     :1000    bob                    2026-12-07T02:14:00+0000\n");
  EXPECT_EQ(format_table(rows, false),
            "a1  :100   a-twenty-one-char-usr  2026-12-07T02:13:00+0000  demo session 1\n"
            "b2  :1000  bob                    2026-12-07T02:14:00+0000\n");
  // Every row splits into the same fields as the header (no space inside a cell).
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::size_t n = 0;
    for (std::string w; words >> w;) ++n;
    EXPECT_GE(n, 4u) << line;
  }
}

}  // namespace
}  // namespace xpra_broker::client
