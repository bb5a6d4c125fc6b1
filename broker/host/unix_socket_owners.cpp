#include "host/unix_socket_owners.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "unique_fd.h"

namespace xpra_broker {

namespace {

constexpr unsigned kListenState = 10;  // TCP_LISTEN, which sock_diag uses for Unix sockets too

// Reads the attributes after one unix_diag_msg: its name (abstract only)
// and uid.
void read_attributes(const nlmsghdr* h, std::unordered_map<std::string, uid_t>& out) {
  const auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
  int len = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(sizeof(*msg)));
  std::optional<std::string> name;
  std::optional<uid_t> uid;
  for (auto* a = reinterpret_cast<const rtattr*>(msg + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    const auto* data = static_cast<const char*>(RTA_DATA(a));
    const std::size_t size = RTA_PAYLOAD(a);
    if (a->rta_type == UNIX_DIAG_NAME && size > 1 && data[0] == '\0') name = std::string(data + 1, size - 1);
    if (a->rta_type == UNIX_DIAG_UID && size >= sizeof(std::uint32_t)) {
      std::uint32_t u;
      std::memcpy(&u, data, sizeof(u));
      uid = static_cast<uid_t>(u);
    }
  }
  if (name && uid) out.emplace(std::move(*name), *uid);
}

}  // namespace

std::unordered_map<std::string, uid_t> abstract_listener_owners() {
  std::unordered_map<std::string, uid_t> out;
  const UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd) return out;
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } query{};
  query.header.nlmsg_len = sizeof(query);
  query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  query.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  query.request.sdiag_family = AF_UNIX;
  query.request.udiag_states = 1u << kListenState;
  query.request.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_UID;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), &query, sizeof(query), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
    return out;
  std::vector<char> buf(32768);
  for (;;) {
    const ssize_t got = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return out;
    int left = static_cast<int>(got);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) return out;
      if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) read_attributes(h, out);
    }
  }
}

std::optional<uid_t> AbstractListenerOwners::owner_of(const std::string& name) {
  const auto now = std::chrono::steady_clock::now();
  if (!have_ || now - taken_ > max_age_) {
    owners_ = abstract_listener_owners();
    taken_ = now;
    have_ = true;
  }
  if (auto it = owners_.find(name); it != owners_.end()) return it->second;
  return std::nullopt;
}

}  // namespace xpra_broker
