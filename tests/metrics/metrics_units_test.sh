#!/usr/bin/env bash
# The metrics units as installed: `cmake --install` of the build under test
# into a scratch tree, then the service's ExecStart names the installed
# client and the node-exporter textfile path, the timer runs it every 15 s
# with an accuracy that does not coalesce the runs, and systemd-analyze
# verify is clean on both (with a broken setting reported, so the check is
# known to bite). Usage: metrics_units_test.sh BUILD_DIR
set -euo pipefail
build=$1
scratch=$(mktemp -d /tmp/xpb-metrics-units-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

DESTDIR=$scratch/dest cmake --install "$build" >"$scratch/install.log" 2>&1 || { cat "$scratch/install.log" >&2; exit 1; }
service=$(find "$scratch/dest" -name xpra-broker-metrics.service)
timer=$(find "$scratch/dest" -name xpra-broker-metrics.timer)
[[ -f $service && -f $timer ]] || { echo "FAIL: units not installed: '$service' '$timer'" >&2; exit 1; }
[[ $(dirname "$service") == $(dirname "$(find "$scratch/dest" -name xpra-brokerd.service)") ]] ||
  fail "metrics units not installed beside xpra-brokerd.service"
# Uncompressed where Prometheus can read them and docs/monitoring.md says.
find "$scratch/dest" -path '*/share/xpra-broker/prometheus/xpra-broker.rules.yml' | grep -q . ||
  fail "alert rules not installed in share/xpra-broker/prometheus"
grep -q "/usr/share/xpra-broker/prometheus/xpra-broker.rules.yml" "$(dirname "$0")/../../docs/monitoring.md" ||
  fail "docs/monitoring.md does not name where the rules are installed"
find "$scratch/dest" -name monitoring.md | grep -q . || fail "docs/monitoring.md not installed"

exec_start=$(grep '^ExecStart=' "$service")
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[[ $exec_start == "ExecStart=$prefix/bin/xpra-request-display --timeout 5 metrics --output /var/lib/prometheus/node-exporter/xpra_broker.prom" ]] ||
  fail "unexpected $exec_start"
[[ -x $scratch/dest$prefix/bin/xpra-request-display ]] || fail "the ExecStart binary is not installed"
for want in Type=oneshot NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/prometheus/node-exporter \
  ConditionPathIsDirectory=/var/lib/prometheus/node-exporter; do
  grep -qx "$want" "$service" || fail "service lacks $want"
done
grep -q '^User=' "$service" && fail "service must run as root (metrics is for root and admin-groups)"
for want in OnUnitActiveSec=15s AccuracySec=1s WantedBy=timers.target; do
  grep -qx "$want" "$timer" || fail "timer lacks $want"
done

if command -v systemd-analyze >/dev/null; then
  root=$scratch/root
  cp -a "$scratch/dest" "$root"
  mkdir -p "$root/usr/lib/systemd/system" "$root/var/lib/prometheus/node-exporter"
  for d in /usr/lib/systemd/system /lib/systemd/system; do
    [[ -d $d && ! -e $root/usr/lib/systemd/system/sysinit.target ]] && cp -a "$d/." "$root/usr/lib/systemd/system/"
  done
  rel_service=${service#"$scratch/dest"}
  rel_timer=${timer#"$scratch/dest"}
  out=$(systemd-analyze verify --root="$root" "$rel_service" "$rel_timer" 2>&1) || fail "systemd-analyze verify failed: $out"
  [[ -z $out ]] || fail "systemd-analyze verify said: $out"
  sed -i 's/^ProtectSystem=strict/ProtectSystem=sometimes/' "$root$rel_service"
  out=$(systemd-analyze verify --root="$root" "$rel_service" 2>&1 || true)
  grep -qi "protect system" <<<"$out" || fail "verify did not report a broken setting (sanity check): $out"
else
  echo "SKIP part: systemd-analyze not installed"
fi

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "metrics units: all checks passed"
