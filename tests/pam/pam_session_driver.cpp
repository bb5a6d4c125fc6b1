// A minimal PAM application for the tests: what pamtester cannot do.
//   --hold        keep a session open until a line (or EOF) arrives on stdin,
//                 so two sessions of one user can overlap;
//   --mode open / --mode close
//                 open or close on a handle of its own, in its own process,
//                 like a daemon that is not the session's parent;
//   --repeat N    N whole pam_start..pam_end cycles in one process: the module
//                 is loaded and unloaded N times, as in a long-lived daemon;
//   --print-env   the session's PAM environment after open;
//   --process-state
//                 threads, open fds, signal handlers and mask, and the module's
//                 mappings, before the first and after the last cycle: the
//                 module must leave them as found (pam_end unloads it).
// Each PAM call prints one line "<call>: <PAM_NAME> (<text>)".
#include <dirent.h>
#include <security/pam_appl.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

namespace {

const char* pam_name(int rc) {
  switch (rc) {
    case PAM_SUCCESS: return "PAM_SUCCESS";
    case PAM_SESSION_ERR: return "PAM_SESSION_ERR";
    case PAM_SERVICE_ERR: return "PAM_SERVICE_ERR";
    case PAM_BUF_ERR: return "PAM_BUF_ERR";
    case PAM_SYSTEM_ERR: return "PAM_SYSTEM_ERR";
    case PAM_USER_UNKNOWN: return "PAM_USER_UNKNOWN";
    case PAM_PERM_DENIED: return "PAM_PERM_DENIED";
    case PAM_ABORT: return "PAM_ABORT";
    default: return "PAM_OTHER";
  }
}

// The module never prompts; any prompt is a bug the test should see.
int refuse_conversation(int, const pam_message**, pam_response**, void*) { return PAM_CONV_ERR; }

int count_entries(const char* dir_path) {
  DIR* dir = ::opendir(dir_path);
  if (!dir) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(dir))
    if (e->d_name[0] != '.') ++n;
  ::closedir(dir);
  return n - (std::strcmp(dir_path, "/proc/self/fd") == 0 ? 1 : 0);  // the DIR's own fd
}

// Mappings of pam_xpra_broker.so in this process: 0 between cycles, as the
// module is not linked -z nodelete and pam_end unloads it.
int module_mappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("/pam_xpra_broker.so") != std::string::npos) ++n;
  return n;
}

std::string process_state() {
  std::string handlers, blocked;
  sigset_t mask;
  ::sigprocmask(SIG_SETMASK, nullptr, &mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction sa {};
    if (::sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler != SIG_DFL)
      handlers += std::to_string(sig) + (sa.sa_handler == SIG_IGN ? ":ign," : ":handler,");
    if (sigismember(&mask, sig) == 1) blocked += std::to_string(sig) + ",";
  }
  return "threads=" + std::to_string(count_entries("/proc/self/task")) +
         " fds=" + std::to_string(count_entries("/proc/self/fd")) + " handlers=[" + handlers + "] blocked=[" +
         blocked + "] module_mappings=" + std::to_string(module_mappings());
}

int usage() {
  std::cerr << "usage: pam_session_driver [--mode both|open|close] [--hold] [--repeat N] [--print-env]\n"
               "                          [--process-state] SERVICE USER\n";
  return 64;
}

void report(const char* call, pam_handle_t* pamh, int rc) {
  std::printf("%s: %s (%s)\n", call, pam_name(rc), pam_strerror(pamh, rc));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "both";
  bool hold = false, print_env = false, show_state = false;
  long repeat = 1;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    const std::string arg = argv[i];
    if (arg == "--hold") {
      hold = true;
    } else if (arg == "--print-env") {
      print_env = true;
    } else if (arg == "--process-state") {
      show_state = true;
    } else if ((arg == "--mode" || arg == "--repeat") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--mode") mode = value;
      else repeat = std::strtol(value.c_str(), nullptr, 10);
    } else {
      return usage();
    }
  }
  if (argc - i != 2 || repeat < 1 || (mode != "both" && mode != "open" && mode != "close")) return usage();
  const char* service = argv[i];
  const char* user = argv[i + 1];

  if (show_state) std::printf("process-state before: %s\n", process_state().c_str());
  int exit_code = 0;
  for (long round = 0; round < repeat; ++round) {
    const pam_conv conv{refuse_conversation, nullptr};
    pam_handle_t* pamh = nullptr;
    int rc = pam_start(service, user, &conv, &pamh);
    if (rc != PAM_SUCCESS) {
      std::printf("pam_start: %s\n", pam_name(rc));
      return 3;
    }
    if (mode != "close") {
      rc = pam_open_session(pamh, 0);
      report("open_session", pamh, rc);
      if (rc != PAM_SUCCESS) exit_code = 1;
      if (print_env) {
        if (char** env = pam_getenvlist(pamh)) {
          for (char** e = env; *e; ++e) {
            std::printf("env %s\n", *e);
            std::free(*e);
          }
          std::free(env);
        }
        std::fflush(stdout);
      }
      if (hold) {
        std::printf("holding\n");
        std::fflush(stdout);
        std::string line;
        std::getline(std::cin, line);
      }
    }
    if (mode != "open") {
      rc = pam_close_session(pamh, 0);
      report("close_session", pamh, rc);
      if (rc != PAM_SUCCESS && exit_code == 0) exit_code = 2;
    }
    pam_end(pamh, rc);
  }
  if (show_state) std::printf("process-state after: %s\n", process_state().c_str());
  return exit_code;
}
