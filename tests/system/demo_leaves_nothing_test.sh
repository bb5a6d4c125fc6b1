#!/usr/bin/env bash
# The README promises that ./scripts/demo.sh "leaves nothing behind": run it
# as the README says (as root, from the source tree, on the build under
# test) and compare what an Xpra or X session could leave before and after:
# /run/xpra, /tmp/.X11-unix and X locks in /tmp, root's Xpra and X
# authority files, and processes. Processes are found three ways: those
# carrying this run's marker in their environment (every descendant of the
# demo inherits it unless a program clears it), those in the demo's session,
# and any X server or Xpra on the demo's displays 500-509.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch demo

marker=XPB_DEMO_RUN_$$_$RANDOM

host_files() {  # what sessions leave on the host, one line each
  local p
  # /run/xpra whole; in /tmp only the demo's displays (500-509) and its own
  # names: other suites' X servers come and go there meanwhile.
  if [[ -e /run/xpra || -L /run/xpra ]]; then
    find /run/xpra -printf '%p %y %u:%g %m\n' 2>/dev/null | sort
  else
    echo "/run/xpra absent"
  fi
  if [[ -e /tmp/.X11-unix || -L /tmp/.X11-unix ]]; then
    find /tmp/.X11-unix -maxdepth 0 -printf '%p %y %u:%g %m\n'
    find /tmp/.X11-unix -name 'X50[0-9]' -printf '%p %y %u:%g %m\n' 2>/dev/null | sort
  else
    echo "/tmp/.X11-unix absent"
  fi
  find /tmp -maxdepth 1 \( -name '.X50[0-9]-lock' -o -name 'xpra-broker-demo.*' \) \
    -printf '%p %y %u:%g %m\n' 2>/dev/null | sort
  for p in "$HOME/.xpra" "$HOME/.Xauthority" "$HOME/.config/xpra" "$HOME/.cache/xpra"; do
    if [[ -e $p || -L $p ]]; then find "$p" -printf '%p %y %s\n' 2>/dev/null | sort; fi
  done
}

demo_processes() {  # SID: the processes the demo left, by any of the three signs
  local sid=$1 pid
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "$marker=1" ||
      [[ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$sid" ]] ||
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq '(^|[ /])(Xvfb|Xorg|xpra|Xdummy)( .*)? :50[0-9]( |$)'; then
      ps -o pid=,user=,args= -p "$pid" 2>/dev/null || true
    fi
  done
}

before=$(host_files)
processes_before=$(demo_processes none)

# setsid: the demo leads a session of its own, so whatever it leaves in that
# session is found even if it cleared its environment. The session leader
# writes its pid (= the session id) before it becomes the demo.
set +e
env "$marker=1" BUILD_DIR="$XPB_BUILD_DIR" setsid --wait \
  bash -c 'echo $$ >"$1"; exec "$2"' demo "$SCRATCH/sid" "$XPB_SOURCE_DIR/scripts/demo.sh" \
  >"$SCRATCH/demo.out" 2>&1
rc=$?
set -e
expect_eq "demo exit code" 0 "$rc"
sleep 1  # a process the demo left has had time to show itself
after=$(host_files)
left=$(demo_processes "$(cat "$SCRATCH/sid")")

expect_eq "host files (/run/xpra, /tmp/.X11-unix, X locks, ~/.xpra) before and after the demo" "$before" "$after"
expect_eq "processes the demo left" "$processes_before" "$left"
check "the demo ran Xvfb and showed its display" grep -q "DISPLAY=:50[0-9]" "$SCRATCH/demo.out"
if command -v xpra >/dev/null; then
  check "the demo ran xpra on a brokered display" grep -q "xpra ran on a brokered display" "$SCRATCH/demo.out"
fi
check "the demo showed the broker's log" grep -q "acquired" "$SCRATCH/demo.out"
if ((FAILURES > 0)); then
  log "--- demo output:"; cat "$SCRATCH/demo.out" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
fi
finish
