// xpra-request-display's exit codes (sysexits.h values where one fits). The
// README documents them; scripts depend on them, so never renumber.
#pragma once

#include "protocol.h"

namespace xpra_broker::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNotFound = 1;      // release/list: no such lease of yours
inline constexpr int kExitUsage = 64;        // EX_USAGE: bad command line
inline constexpr int kExitInvalid = 65;      // EX_DATAERR: the broker rejected the request as malformed
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: broker unreachable
inline constexpr int kExitInternal = 70;     // EX_SOFTWARE: the broker (or this client) failed
inline constexpr int kExitOsError = 71;      // EX_OSERR: fork/exec plumbing failed
inline constexpr int kExitXServerFailed = 73;  // exec --xvfb: the X server did not start (EX_CANTCREAT)
inline constexpr int kExitIoError = 74;      // EX_IOERR: metrics --output: the file cannot be written
inline constexpr int kExitTempFail = 75;     // EX_TEMPFAIL: refused for now (quota, rate limit, back-off)
inline constexpr int kExitDenied = 77;       // EX_NOPERM: not allowed
inline constexpr int kExitCannotExecute = 126;
inline constexpr int kExitCommandNotFound = 127;

inline int exit_code_for(v1::Status status) {
  switch (status) {
    case v1::OK: return kExitOk;
    case v1::DENIED: return kExitDenied;
    case v1::NOT_FOUND: return kExitNotFound;
    case v1::EXHAUSTED:
    case v1::RATE_LIMITED:
    case v1::UNAVAILABLE: return kExitTempFail;
    case v1::INVALID: return kExitInvalid;
    default: return kExitInternal;
  }
}

}  // namespace xpra_broker::client
