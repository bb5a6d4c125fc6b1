// unix_socket_owners.h against the real kernel: a listener's owner comes from
// sock_diag, a name that is only bound (no listen()) is not listed.
#include "host/unix_socket_owners.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "unique_fd.h"

namespace xpra_broker {
namespace {

UniqueFd bind_abstract(const std::string& name, bool listen) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 || (listen && ::listen(fd.get(), 1) != 0))
    return {};
  return fd;
}

TEST(UnixSocketOwnersTest, AListenersOwnerIsNamedAndABoundNameIsNot) {
  const std::string listening = "xpb-unit-owners-listen-" + std::to_string(::getpid());
  const std::string bound = "xpb-unit-owners-bound-" + std::to_string(::getpid());
  const UniqueFd l = bind_abstract(listening, true), b = bind_abstract(bound, false);
  ASSERT_TRUE(l && b);
  const auto owners = abstract_listener_owners();
  ASSERT_TRUE(owners.count(listening)) << "sock_diag did not list our listener (" << owners.size() << " listed)";
  EXPECT_EQ(owners.at(listening), ::geteuid());
  EXPECT_FALSE(owners.count(bound)) << "bound but not listening: no server";
  AbstractListenerOwners cached(std::chrono::milliseconds(0));
  EXPECT_EQ(cached.owner_of(listening), ::geteuid());
  EXPECT_EQ(cached.owner_of("xpb-unit-owners-nobody-there"), std::nullopt);
}

TEST(UnixSocketOwnersTest, AnotherUsersListenerIsNamedAsThatUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another uid";
  const std::string name = "xpb-unit-owners-other-" + std::to_string(::getpid());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(1);
    const UniqueFd l = bind_abstract(name, true);
    if (!l) ::_exit(2);
    (void)::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  const bool up = ::read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  const auto owner = up ? AbstractListenerOwners(std::chrono::milliseconds(0)).owner_of(name) : std::nullopt;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(up) << "the child could not listen";
  EXPECT_EQ(owner, static_cast<uid_t>(65534));
}

}  // namespace
}  // namespace xpra_broker
