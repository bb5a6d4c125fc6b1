// The floor the broker is measured against: a single-threaded server on a
// Unix socket that reads one frame (4-byte length prefix, proto/framing.h) and
// answers it with one canned frame, doing nothing else.
//
// Three loops, so the gap between them can be attributed:
//   epoll          raw epoll, one recv per readable event: the true floor.
//   asio           Boost.Asio shaped like broker_server.cpp's ClientSession:
//                  async_read of the header, a per-frame deadline timer,
//                  async_read of the body, one async_write.
//   asio-no-timer  the same without the deadline timer.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "unique_fd.h"

namespace xpra_broker::bench {

enum class EchoLoop { epoll, asio, asio_no_timer };

const char* name_of(EchoLoop loop);
std::optional<EchoLoop> parse_echo_loop(std::string_view name);

// A non-blocking, CLOEXEC Unix stream socket bound to `path` and listening.
// Throws on failure (start-up only).
UniqueFd listen_unix(const std::string& path);

// Forks a child that serves `listener` with `loop`, answering every frame with
// `reply_frame` (a complete frame, header included), until it is killed. The
// child dies with the parent (PR_SET_PDEATHSIG). Call before starting threads.
// Returns the child's pid; the caller closes its copy of the listener.
pid_t fork_echo_server(EchoLoop loop, int listener, const std::string& reply_frame);

}  // namespace xpra_broker::bench
