// LD_PRELOAD shim for the PAM tests: syslog() lines go to the file named by
// $XPB_SYSLOG_CAPTURE instead of /dev/log, so a test can check what the
// module logged without a syslog daemon and without touching the host's log.
// libpam's pam_syslog ends in __syslog_chk (glibc's fortified syslog).
#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace {

void capture(int priority, const char* format, va_list args) {
  const char* path = std::getenv("XPB_SYSLOG_CAPTURE");
  if (!path) return;
  char line[4096];
  const int prefix = std::snprintf(line, sizeof(line), "<%d> ", LOG_PRI(priority));
  int n = std::vsnprintf(line + prefix, sizeof(line) - prefix - 1, format, args);
  if (n < 0) return;
  std::size_t size = static_cast<std::size_t>(prefix) + static_cast<std::size_t>(n);
  if (size > sizeof(line) - 2) size = sizeof(line) - 2;
  line[size++] = '\n';
  // O_APPEND: one write per line, so concurrent sessions do not interleave.
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, line, size);
  ::close(fd);
}

}  // namespace

extern "C" {

void syslog(int priority, const char* format, ...) {
  va_list args;
  va_start(args, format);
  capture(priority, format, args);
  va_end(args);
}

void vsyslog(int priority, const char* format, va_list args) { capture(priority, format, args); }

void __syslog_chk(int priority, int, const char* format, ...) {
  va_list args;
  va_start(args, format);
  capture(priority, format, args);
  va_end(args);
}

void __vsyslog_chk(int priority, int, const char* format, va_list args) { capture(priority, format, args); }

}
