#!/usr/bin/env bash
# The one command that installs what is missing, builds, and shows the broker
# at work on an embedded default: a temporary runtime dir and socket, no
# system install, nothing left behind.
#   ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then ./scripts/install-deps.sh; fi
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target xpra-brokerd xpra-request-display

case $build_dir in /*) ;; *) build_dir=$PWD/$build_dir ;; esac
brokerd=$build_dir/broker/xpra-brokerd
client=$build_dir/client/xpra-request-display
demo_dir=$(mktemp -d /tmp/xpra-broker-demo.XXXXXX)
chmod 0755 "$demo_dir"
export XPRA_BROKER_SOCKET=$demo_dir/broker.sock
# X clients and Xpra write ~/.Xauthority: the demo's goes in its own dir.
export XAUTHORITY=$demo_dir/Xauthority
# X servers make /tmp/.X11-unix when it is missing and leave it, and one
# running as root hands it to root (xtrans): the demo removes it again if it
# made it, or gives it back its owner (tests/system/demo_leaves_nothing_test.sh).
x11_unix_owner=
[ -d /tmp/.X11-unix ] && [ ! -L /tmp/.X11-unix ] && x11_unix_owner=$(stat -c %u:%g /tmp/.X11-unix)
holders=()
cleanup() {
  for pid in "${holders[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${broker_pid:-}" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$demo_dir"
  if [ -z "$x11_unix_owner" ]; then
    rmdir /tmp/.X11-unix 2>/dev/null || true
  elif [ "$(id -u)" -eq 0 ] && [ -d /tmp/.X11-unix ] && [ ! -L /tmp/.X11-unix ]; then
    chown -h "$x11_unix_owner" /tmp/.X11-unix 2>/dev/null || true
  fi
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# Started as root, the broker never stays root: it switches to the packaged
# xpra-broker user, or to whom user= names. A fresh machine has no
# xpra-broker yet, so the demo names nobody:nogroup (the broker keeps just
# CAP_CHOWN, CAP_FOWNER and CAP_KILL, and takes the runtime dir over).
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  if id xpra-broker >/dev/null 2>&1 && getent group xpra >/dev/null; then run_as=(--user=xpra-broker --group=xpra)
  else run_as=(--user=nobody --group=nogroup); fi
fi

step "Start xpra-brokerd on a temporary runtime dir ($demo_dir), displays 500-509 ${run_as[*]}"
"$brokerd" "${run_as[@]}" --runtime-dir="$demo_dir" --socket="$XPRA_BROKER_SOCKET" --displays=500-509 \
  --max-leases-per-user=4 2>"$demo_dir/broker.log" &
broker_pid=$!
for _ in $(seq 50); do [ -S "$XPRA_BROKER_SOCKET" ] && break; sleep 0.1; done

step "Three sessions take leases (each holds its display while its command runs)"
for i in 1 2 3; do
  "$client" exec --purpose "demo session $i" -- sleep 60 &
  holders+=($!)
done
sleep 0.5
show "$client" list
show "$client" list --json

step "A fourth and fifth: the per-user quota (max-leases-per-user=4) refuses the fifth with exit 75"
"$client" exec -- sleep 60 & holders+=($!)
sleep 0.3
show "$client" exec -- true || echo "(exit status $?)"

step "kill -9 of a holder ends its lease; release :N ends another"
kill -9 "${holders[0]}"
first=$("$client" list --json | grep -o '"display": [0-9]*' | head -1 | grep -o '[0-9]*')
show "$client" release ":$first"
sleep 0.3
show "$client" list

if command -v Xvfb >/dev/null && command -v xdpyinfo >/dev/null; then
  step "A real X server on a brokered display: exec --xvfb starts Xvfb, waits for -displayfd, runs the command"
  show "$client" exec --xvfb -- sh -c 'xdpyinfo | head -4; echo "DISPLAY=$DISPLAY dir=$XPRA_BROKER_RUNTIME_DIR"'
  if command -v xpra >/dev/null; then
    step "The Xpra way: exec -- xpra start :{display} --socket-dir={runtime_dir} (stopped after 3 s)"
    # Everything this Xpra writes stays in the demo's dir: its sockets (the
    # host's config also lists /run/xpra and ~/.xpra in socket-dirs), its
    # log and session files (HOME, XDG_RUNTIME_DIR), and no D-Bus daemon or
    # systemd scope of its own.
    mkdir -m 0700 "$demo_dir/home" "$demo_dir/xdg"
    show env HOME="$demo_dir/home" XDG_RUNTIME_DIR="$demo_dir/xdg" \
      "$client" exec --grace 2 -- timeout 3 xpra start ":{display}" --daemon=no --socket-dir="{runtime_dir}" \
      --socket-dirs="{runtime_dir}" --log-dir="$demo_dir/home" --systemd-run=no --dbus-launch= \
      --dbus-proxy=no --dbus-control=no \
      --start= --mdns=no --pulseaudio=no --notifications=no --webcam=no --speaker=off --microphone=off \
      >/dev/null 2>&1 || true
    echo "(xpra ran on a brokered display and was stopped; no X server is left:)"
    pgrep -a Xvfb || echo "no Xvfb running"
  fi
else
  step "Xvfb is not installed: skipping the X server part (apt-get install xvfb x11-utils)"
fi

step "The broker's view"
for pid in "${holders[@]}"; do kill "$pid" 2>/dev/null || true; done
wait "${holders[@]}" 2>/dev/null || true
holders=()
sleep 0.3
show "$client" status

step "What the broker logged"
kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=
cat "$demo_dir/broker.log"
