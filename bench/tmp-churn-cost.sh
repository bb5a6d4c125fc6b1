#!/usr/bin/env bash
# What another user's file churn in /tmp costs an idle xpra-brokerd (issue 21,
# attack 7): each broker given is started on the real /tmp (its display name
# watch follows /tmp with inotify), `nobody` creates and deletes files in /tmp
# as fast as one process can for SECONDS, and the broker's CPU time over that
# window is printed, with the churn rate, next to the same window without
# churn. Several brokers (e.g. the build before a change and after) are
# measured in one run, one after the other, under the same churn.
#
# Usage (as root): bench/tmp-churn-cost.sh [--seconds N] BROKERD [BROKERD...]
# Prints figures; exits 0 whenever it could measure.
set -euo pipefail
seconds=15
if [[ ${1:-} == --seconds ]]; then seconds=$2; shift 2; fi
if [[ $# -eq 0 || ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 64
fi
[[ $(id -u) == 0 ]] || { echo "tmp-churn-cost: run as root (the broker drops to xpra-broker)" >&2; exit 77; }
ticks=$(getconf CLK_TCK)
work=$(mktemp -d /tmp/xpb-churn-bench-XXXXXX)
chmod 0755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One process of nobody's: create+delete pairs in /tmp, counting them.
churn() {
  setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c '
import os, sys, time
end = time.monotonic() + float(sys.argv[1]); n = 0; name = "/tmp/xpb-churn-%d-" % os.getpid()
while time.monotonic() < end:
    for i in range(500):
        p = name + str(i); os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)); os.unlink(p)
    n += 500
print(n)' "$1"
}

printf '%-60s %12s %14s %14s\n' broker "churn ops/s" "idle cpu %" "churn cpu %"
for brokerd in "$@"; do
  run="$work/run-$RANDOM"
  printf '# empty\n' > "$work/broker.conf"
  "$brokerd" --config="$work/broker.conf" --user=xpra-broker --group=xpra --runtime-dir="$run" \
    --socket="$run/broker.sock" --displays=7000-7199 --log-level=warn > "$work/broker.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S $run/broker.sock ]] && break; sleep 0.1; done
  [[ -S $run/broker.sock ]] || { echo "$brokerd did not start:"; cat "$work/broker.log"; exit 1; }
  sleep 1
  before=$(cpu_ticks $pid); sleep "$seconds"; idle=$(( $(cpu_ticks $pid) - before ))
  before=$(cpu_ticks $pid); ops=$(churn "$seconds"); busy=$(( $(cpu_ticks $pid) - before ))
  kill $pid; wait $pid 2>/dev/null || true
  awk -v b="$brokerd" -v o="$ops" -v s="$seconds" -v i="$idle" -v c="$busy" -v t="$ticks" \
    'BEGIN { printf "%-60s %12.0f %13.1f%% %13.1f%%\n", b, 2 * o / s, 100 * i / t / s, 100 * c / t / s }'
done
