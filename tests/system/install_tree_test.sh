#!/usr/bin/env bash
# `cmake --install` of the build under test: no setuid or setgid file
# anywhere; the units, sysusers.d and tmpfiles.d rules, the example config,
# every doc, the man pages and the bash completions are installed, and
# nothing in /etc/tmpfiles.d (the admin's); systemd-analyze verify is clean
# on the installed units; the example config lists every key with its true
# default.
source "$(dirname "$0")/lib.sh"
require_root
make_scratch install-tree
DEST=$SCRATCH/dest
PREFIX=$XPB_INSTALL_PREFIX

DESTDIR=$DEST cmake --install "$XPB_BUILD_DIR" >"$SCRATCH/install.log" 2>&1 ||
  { cat "$SCRATCH/install.log" >&2; fail "cmake --install failed"; finish; }

check "no setuid or setgid file in the install tree" test -z "$(find "$DEST" -perm /6000 -print)"
find "$DEST" -perm /6000 -ls >&2

one_file() {  # one_file NAME: the single installed file of that name
  local found
  found=$(find "$DEST" -name "$1" \( -type f -o -type l \))
  [[ $(wc -l <<<"$found") == 1 && -n "$found" ]] || { fail "expected one installed $1, found: ${found:-none}"; return 1; }
  echo "$found"
}
service=$(one_file xpra-brokerd.service) || finish
socket=$(one_file xpra-brokerd.socket) || finish
check "sysusers.d/xpra-broker.conf installed" test -f "$(find "$DEST" -path '*sysusers.d/xpra-broker.conf')"
check "tmpfiles.d/xpra-broker.conf installed" test -f "$(find "$DEST" -path '*tmpfiles.d/xpra-broker.conf')"
check "nothing installed in etc/tmpfiles.d (an admin's own xpra.conf stays theirs)" \
  test -z "$(find "$DEST" -path '*etc/tmpfiles.d*')"
docdir=$DEST$PREFIX/share/doc/xpra-broker
for doc in "$XPB_SOURCE_DIR/README.md" "$XPB_SOURCE_DIR"/docs/*.md; do
  check "doc $(basename "$doc") installed" cmp -s "$doc" "$docdir/$(basename "$doc")"
done
check "example config installed beside the docs" cmp -s "$XPB_SOURCE_DIR/packaging/etc/xpra/broker.conf" "$docdir/examples/broker.conf"
for page in man1/xpra-request-display.1 man5/xpra-broker.conf.5 man8/xpra-brokerd.8 man8/pam_xpra_broker.8; do
  check "man page $page installed" test -f "$DEST$PREFIX/share/man/$page"
done
for c in xpra-request-display xpra-brokerd; do
  check "bash completion for $c installed" test -f "$DEST$PREFIX/share/bash-completion/completions/$c"
done
config=$(find "$DEST" -path '*etc/xpra/broker.conf')
check "example config installed" test -f "$config"
expect_eq "ExecStart" "ExecStart=$PREFIX/sbin/xpra-brokerd" "$(grep '^ExecStart=' "$service")"
check "the ExecStart binary is installed" test -x "$DEST$PREFIX/sbin/xpra-brokerd"

# What the issue asks of the unit, setting by setting.
for want in Type=notify User=xpra-broker Group=xpra NoNewPrivileges=yes ProtectSystem=strict \
  "AmbientCapabilities=CAP_CHOWN CAP_FOWNER CAP_KILL" "CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_KILL" \
  "RestrictAddressFamilies=AF_UNIX" "ReadWritePaths=/run/xpra /tmp" PrivateTmp=no PrivateNetwork=no; do
  check "unit sets $want" grep -qx "$want" "$service"
done
check "unit never turns PrivateTmp/PrivateNetwork/PrivateUsers on" \
  bash -c "! grep -Eq '^(PrivateTmp|PrivateNetwork|PrivateUsers)=(yes|true|on|1)' '$service'"
check "socket unit listens on the default socket" grep -qx "ListenStream=/run/xpra/broker.sock" "$socket"
check "socket is connectable by every user" grep -qx "SocketMode=0666" "$socket"

# systemd-analyze verify, on a scratch root holding the install tree and a
# copy of the system's own units (for sysinit.target and friends).
if command -v systemd-analyze >/dev/null; then
  ROOT=$SCRATCH/root
  cp -a "$DEST" "$ROOT"
  mkdir -p "$ROOT/usr/lib/systemd"
  for d in /usr/lib/systemd/system /lib/systemd/system; do
    if [[ -d $d && ! -e $ROOT/usr/lib/systemd/system/sysinit.target ]]; then
      cp -a "$d/." "$ROOT/usr/lib/systemd/system/"
    fi
  done
  rc=0
  # verify runs `man` for each Documentation=man: page: the installed ones.
  out=$(MANPATH="$ROOT$PREFIX/share/man" systemd-analyze verify --root="$ROOT" "${service#"$DEST"}" "${socket#"$DEST"}" 2>&1) || rc=$?
  expect_eq "systemd-analyze verify exit code" 0 "$rc"
  expect_eq "systemd-analyze verify output" "" "$out"
  # A broken unit must be reported, or the check above proves nothing.
  cp "$ROOT${service#"$DEST"}" "$SCRATCH/service.orig"
  sed -i 's/^ProtectSystem=strict/ProtectSystem=sometimes/' "$ROOT${service#"$DEST"}"
  out=$(systemd-analyze verify --root="$ROOT" "${service#"$DEST"}" 2>&1 || true)
  check "verify reports a broken setting (sanity check of this test)" grep -qi "protect system" <<<"$out"
  cp "$SCRATCH/service.orig" "$ROOT${service#"$DEST"}"
else
  log "SKIP part: systemd-analyze not installed"
fi

# The example config: valid, every key of `xpra-brokerd --help` present, and
# each commented default is the real default.
# The host's own /run/xpra, /tmp and Xpra config are not this test's: the
# checks that read them are pointed at the scratch dir (the command line wins
# over the file).
mkdir -m 0755 "$SCRATCH/run"
hermetic=(--runtime-dir="$SCRATCH/run" --socket="$SCRATCH/run/broker.sock" --x11-tmp-dir="$SCRATCH/x11"
  --xpra-config-dirs=)
check "example config passes --check-config" "$XPB_BROKERD" --config="$config" "${hermetic[@]}" --check-config
keys=$("$XPB_BROKERD" --help | awk '/^Every config key/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
check "xpra-brokerd --help lists config keys" test -n "$keys"
for key in $keys; do
  check "example config documents '$key'" grep -Eq "^#$key =" "$config"
done
sed -E 's/^#([a-z0-9-]+ =)/\1/' "$config" >"$SCRATCH/uncommented.conf"
# (stdout is the effective configuration; the verdict, naming the file, is on stderr.)
expect_eq "--check-config with every default uncommented" \
  "$("$XPB_BROKERD" --config=/dev/null "${hermetic[@]}" --check-config 2>/dev/null)" \
  "$("$XPB_BROKERD" --config="$SCRATCH/uncommented.conf" "${hermetic[@]}" --check-config 2>/dev/null)"

# A plain --prefix install stays inside the prefix (only for a non-/usr
# configuration; a /usr build installs to /etc and /lib/systemd by design).
if [[ "$PREFIX" != /usr ]]; then
  P2=$SCRATCH/prefix
  cmake --install "$XPB_BUILD_DIR" --prefix "$P2" >"$SCRATCH/install2.log" 2>&1 || fail "cmake --install --prefix failed"
  for f in lib/systemd/system/xpra-brokerd.service lib/systemd/system/xpra-brokerd.socket \
    lib/sysusers.d/xpra-broker.conf lib/tmpfiles.d/xpra-broker.conf etc/xpra/broker.conf \
    share/man/man8/xpra-brokerd.8 share/bash-completion/completions/xpra-request-display; do
    check "--prefix install has $f under the prefix" test -e "$P2/$f" -o -L "$P2/$f"
  done
  check "--prefix install: no setuid or setgid file" test -z "$(find "$P2" -perm /6000 -print)"
  check "--prefix install wrote only under the prefix" \
    bash -c "! grep -E '^-- (Installing|Up-to-date): ' '$SCRATCH/install2.log' | grep -v ': $P2/'"
fi
finish
