#include "lease_conversation.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <iostream>

#include "untrusted_text.h"

namespace xpra_broker::client {

namespace {

void warn(const std::string& message) { std::cerr << "xpra-request-display: " << message << "\n"; }

bool answered_ok(BrokerConnection& conn, const v1::Request& request, v1::Response& response) {
  return conn.call(request, response) == BrokerConnection::Error::none && response.status() == v1::OK;
}

}  // namespace

LeaseConversation::LeaseConversation(BrokerConnection& conn, std::string socket_path, v1::Lease lease,
                                     std::string reattach_token)
    : conn_(conn), socket_path_(std::move(socket_path)), lease_(std::move(lease)),
      reattach_token_(std::move(reattach_token)) {}

bool LeaseConversation::report_process(pid_t pid, v1::ProcessRole role) {
  v1::Request request;
  auto* r = request.mutable_report_process();
  r->set_lease_id(lease_.id());
  r->set_pid(pid);
  r->set_role(role);
  v1::Response response;
  if (answered_ok(conn_, request, response)) return true;
  warn("the broker did not take pid " + std::to_string(pid) + " under lease " + lease_.id() + ": " +
       (response.message().empty() ? std::string("no answer") : escape_untrusted(response.message(), 512)));
  return false;
}

void LeaseConversation::report_start_failure(v1::StartFailure failure, const std::string& detail) {
  v1::Request request;
  auto* r = request.mutable_report_start_failure();
  r->set_lease_id(lease_.id());
  r->set_failure(failure);
  // The X server's own words, in whatever encoding its locale had: escaped
  // into valid UTF-8 (a protobuf string must be), the last 1 KiB.
  r->set_detail(escape_untrusted(detail.size() > 1024 ? detail.substr(detail.size() - 1024) : detail, 1024));
  v1::Response response;
  if (answered_ok(conn_, request, response) && failure == v1::DISPLAY_CONFLICT &&
      !response.report_start_failure().conflict_confirmed())
    warn("the broker found nothing of another user on :" + std::to_string(lease_.display()) +
         ", so it counts this as a failed start of yours (see the command's own errors)");
}

void LeaseConversation::release(std::optional<int> exit_status, std::chrono::milliseconds limit) {
  v1::Request release;
  release.mutable_release()->set_lease_id(lease_.id());
  if (exit_status) release.mutable_release()->set_exit_status(*exit_status);
  v1::Response released;
  if (answered_ok(conn_, release, released))
    wait_until_lease_gone(conn_, lease_.id(), /*all=*/false, limit, [] {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    });
}

void LeaseConversation::check_connection() {
  if (link_ != Link::connected) return;
  char byte;
  const ssize_t got = ::recv(conn_.fd(), &byte, 1, MSG_DONTWAIT);
  if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR))) return;
  link_ = Link::reattaching;
  reconnect_delay_ = std::chrono::milliseconds(100);
  reconnect_at_ = Clock::now() + reconnect_delay_;
  warn("lost the connection to the broker; the command keeps running on :" + std::to_string(lease_.display()) +
       " while this client reattaches to lease " + lease_.id());
}

int LeaseConversation::poll_timeout_ms() const {
  if (link_ != Link::reattaching) return -1;
  return static_cast<int>(std::max<long>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(reconnect_at_ - Clock::now()).count()));
}

void LeaseConversation::reattach_if_due() {
  if (link_ != Link::reattaching || Clock::now() < reconnect_at_) return;
  auto fresh = BrokerConnection::connect(socket_path_, std::chrono::milliseconds(1000));
  if (fresh.connected()) {
    v1::Request request;
    request.mutable_reattach()->set_lease_id(lease_.id());
    request.mutable_reattach()->set_reattach_token(reattach_token_);
    v1::Response response;
    if (fresh.call(request, response) == BrokerConnection::Error::none) {
      if (response.status() == v1::OK) {
        conn_ = std::move(fresh);
        link_ = Link::connected;
        warn("reattached to lease " + lease_.id() + " (display :" + std::to_string(lease_.display()) + ")");
        return;
      }
      if (response.status() == v1::NOT_FOUND || response.status() == v1::DENIED) {
        link_ = Link::lease_gone;
        warn("the broker no longer has lease " + lease_.id() + ": " + response.message());
        return;
      }
    }
  }
  reconnect_delay_ = std::min<std::chrono::milliseconds>(reconnect_delay_ * 2, std::chrono::seconds(2));
  reconnect_at_ = Clock::now() + reconnect_delay_;
}

}  // namespace xpra_broker::client
