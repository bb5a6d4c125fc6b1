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
// exec --xvfb: the X server did not start (EX_CANTCREAT). Only exec starts
// one, so this is never an exit code itself: exec exits 123 for it.
inline constexpr int kExitXServerFailed = 73;
inline constexpr int kExitIoError = 74;      // EX_IOERR: metrics --output: the file cannot be written
inline constexpr int kExitTempFail = 75;     // EX_TEMPFAIL: refused for now (quota, rate limit, back-off)
inline constexpr int kExitDenied = 77;       // EX_NOPERM: not allowed
inline constexpr int kExitCannotExecute = 126;
inline constexpr int kExitCommandNotFound = 127;

// exec passes CMD's status through, so its own failures must not look like
// one: as timeout(1), env(1) and nice(1) keep 125-127 for theirs, exec keeps
// 118-125 (and 126, 127: CMD not executable / not found, before it ran) and
// moves each of the sysexits codes above into it. The other commands run no
// CMD and keep the sysexits codes. A CMD that itself exits 118-125 reads as
// one of these; the line this program writes on stderr then tells them apart.
inline constexpr int kExecExitUsage = 118;          // 64
inline constexpr int kExecExitInvalid = 119;        // 65
inline constexpr int kExecExitUnavailable = 120;    // 69: the broker is unreachable
inline constexpr int kExecExitInternal = 121;       // 70
inline constexpr int kExecExitOsError = 122;        // 71: cannot start CMD (fork, pipe)
inline constexpr int kExecExitXServerFailed = 123;  // 73: --xvfb: the X server did not start
inline constexpr int kExecExitTempFail = 124;       // 75: refused for now; retry later
inline constexpr int kExecExitDenied = 125;         // 77

// One of exec's own failures (a code above), from the code the other
// commands use for it; anything else (0, 126, 127) unchanged.
inline int exec_own_failure(int code) {
  switch (code) {
    case kExitUsage: return kExecExitUsage;
    case kExitInvalid: return kExecExitInvalid;
    case kExitUnavailable: return kExecExitUnavailable;
    case kExitInternal: return kExecExitInternal;
    case kExitOsError: return kExecExitOsError;
    case kExitXServerFailed: return kExecExitXServerFailed;
    case kExitTempFail: return kExecExitTempFail;
    case kExitDenied: return kExecExitDenied;
    default: return code;
  }
}

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
