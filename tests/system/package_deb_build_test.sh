#!/usr/bin/env bash
# Builds the .deb the Debian way (dpkg-buildpackage -b on debian/, with
# debhelper) from a copy of the source tree, twice: version N as in
# debian/changelog, then N+1 (a new changelog entry on the same tree, built
# without cleaning, so nothing is compiled again) for the upgrade test. The
# packages are left in $DEB_AREA/N and $DEB_AREA/N1 for system.package_deb
# and system.package_deb_lintian (CTest fixture deb_packages). Checks what
# the package holds: no setuid or setgid file, every installed file in its
# place, the conffile, Depends, and maintainer scripts written by debhelper
# (no hand-written `systemctl enable` or `adduser`).
source "$(dirname "$0")/lib.sh"
require_root
command -v dpkg-buildpackage >/dev/null || skip "dpkg-dev not installed (not a Debian host)"
command -v dh >/dev/null || skip "debhelper not installed (scripts/install-deps.sh installs it)"
make_scratch package-deb-build
rm -rf "$DEB_AREA"
mkdir -p "$DEB_AREA/N" "$DEB_AREA/N1"
SRC=$DEB_AREA/src
copy_source_tree "$SRC"
(cd "$SRC" && dpkg-checkbuilddeps) 2>&1 || { fail "build dependencies missing (scripts/install-deps.sh)"; finish; }

N=$(cd "$SRC" && dpkg-parsechangelog -S Version)
project_version=$(sed -nE 's/^project\(xpra-broker VERSION ([0-9.]+).*/\1/p' "$SRC/CMakeLists.txt")
expect_eq "debian/changelog's version is the project's" "$project_version" "${N%%[-+~]*}"
expect_eq "the RPM spec's version is the project's" "$project_version" \
  "$(awk '$1 == "Version:" { print $2 }' "$SRC/packaging/rpm/xpra-broker.spec")"

build() {  # build OUTDIR [dpkg-buildpackage args]
  local out=$1
  shift
  local start=$SECONDS
  if ! (cd "$SRC" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -b -us -uc "$@") \
    >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log" >&2
    fail "dpkg-buildpackage $* failed (log: $out/build.log)"
    finish
  fi
  mv "$DEB_AREA"/*.deb "$DEB_AREA"/*.changes "$DEB_AREA"/*.buildinfo "$out/"
  log "      built $(cd "$out" && ls ./*.deb | tr '\n' ' ')in $((SECONDS - start)) s"
}
build "$DEB_AREA/N"
N1="$N+upgradetest1"
maintainer=$(cd "$SRC" && dpkg-parsechangelog -S Maintainer)
{
  printf 'xpra-broker (%s) unstable; urgency=medium\n\n' "$N1"
  printf '  * Rebuilt by tests/system/package_deb_build_test.sh for the upgrade test.\n\n'
  printf ' -- %s  %s\n\n' "$maintainer" "$(date -R)"
  cat "$SRC/debian/changelog"
} >"$SCRATCH/changelog"
cp "$SCRATCH/changelog" "$SRC/debian/changelog"
build "$DEB_AREA/N1" -nc
DEB=$DEB_AREA/N/xpra-broker_${N}_$(dpkg --print-architecture).deb
check "version N is $N" test -f "$DEB"
expect_eq "version N+1" "$N1" "$(dpkg-deb -f "$DEB_AREA"/N1/xpra-broker_*.deb Version)"

# Contents: tar-style modes; an s/S in the owner or group execute place is a
# setuid/setgid bit.
dpkg-deb -c "$DEB" >"$SCRATCH/contents"
check "no setuid or setgid file in the package" bash -c "! awk '{print \$1}' '$SCRATCH/contents' | grep -q '^...[sS]\|^......[sS]'"
for f in ./usr/sbin/xpra-brokerd ./usr/bin/xpra-request-display ./usr/lib/sysusers.d/xpra-broker.conf \
  ./usr/lib/tmpfiles.d/xpra-broker.conf ./etc/xpra/broker.conf ./lib/systemd/system/xpra-brokerd.service \
  ./lib/systemd/system/xpra-brokerd.socket ./lib/systemd/system/xpra-broker-metrics.service \
  ./lib/systemd/system/xpra-broker-metrics.timer "./lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/security/pam_xpra_broker.so" \
  ./usr/share/pam-configs/xpra-broker ./usr/share/xpra-broker/prometheus/xpra-broker.rules.yml \
  ./usr/share/man/man1/xpra-request-display.1.gz ./usr/share/man/man5/xpra-broker.conf.5.gz \
  ./usr/share/man/man8/xpra-brokerd.8.gz ./usr/share/man/man8/pam_xpra_broker.8.gz \
  ./usr/share/bash-completion/completions/xpra-request-display ./usr/share/bash-completion/completions/xpra-brokerd \
  ./usr/share/doc/xpra-broker/copyright ./usr/share/doc/xpra-broker/examples/broker.conf; do
  check "package contains $f" grep -q " $f\$" "$SCRATCH/contents"
done
# Where bookworm's own PAM modules are (pam_unix.so, from libpam-modules), not /usr/lib.
pam_dir=$(dirname "$(dpkg -L libpam-modules | grep '/pam_unix.so$' | head -1)")
check "the PAM module beside pam_unix.so of libpam-modules ($pam_dir)" \
  grep -q " .$pam_dir/pam_xpra_broker.so\$" "$SCRATCH/contents"
check "nothing under /usr/lib/<triplet>/security" bash -c "! grep -q ' ./usr/lib/[^/]*/security/' '$SCRATCH/contents'"
for doc in README.md "$(cd "$SRC" && ls docs/*.md)"; do
  for d in $doc; do
    check "package contains the doc $(basename "$d") (uncompressed: units link to it)" grep -q " ./usr/share/doc/xpra-broker/$(basename "$d")\$" "$SCRATCH/contents"
  done
done
check "Xpra's rule is replaced by an empty one in /usr/lib (diverted, see preinst)" \
  grep -q " ./usr/lib/tmpfiles.d/xpra.conf -> /dev/null\$" "$SCRATCH/contents"
check "nothing in /etc/tmpfiles.d (an admin's directory)" bash -c "! grep -q ' ./etc/tmpfiles.d/' '$SCRATCH/contents'"

depends=$(dpkg-deb -f "$DEB" Depends)
log "      Depends: $depends"
for dep in libc6 libcap2 libsystemd0 libstdc++6 libpam0g "systemd | systemd-standalone-sysusers"; do
  check "Depends names $dep" grep -qF "$dep" <<<"$depends"
done
dpkg-deb -e "$DEB" "$SCRATCH/control"
expect_eq "conffiles" "/etc/xpra/broker.conf" "$(cat "$SCRATCH/control/conffiles")"
for s in preinst postinst prerm postrm; do
  check "$s is executable and valid sh" bash -c "test -x '$SCRATCH/control/$s' && sh -n '$SCRATCH/control/$s'"
done
for helper in dh_installsysusers dh_installtmpfiles dh_installsystemd; do
  check "postinst has $helper's snippet" grep -q "Automatically added by $helper/" "$SCRATCH/control/postinst"
done
check "postinst creates the user with systemd-sysusers xpra-broker.conf" grep -q 'systemd-sysusers .*xpra-broker.conf' "$SCRATCH/control/postinst"
check "postinst enables the socket with deb-systemd-helper" grep -q "deb-systemd-helper enable 'xpra-brokerd.socket'" "$SCRATCH/control/postinst"
check "postinst try-restarts the service on upgrade" grep -q "deb-systemd-invoke try-restart 'xpra-brokerd.service'" "$SCRATCH/control/postinst"
check "no hand-written systemctl enable or adduser" bash -c "! cat '$SCRATCH'/control/{preinst,postinst,prerm,postrm} | grep -Eq 'systemctl enable|adduser|addgroup'"
dpkg-deb -x "$DEB" "$SCRATCH/x"
expect_eq "packaged unit's ExecStart" "ExecStart=/usr/sbin/xpra-brokerd" \
  "$(grep -h '^ExecStart=' "$SCRATCH/x/lib/systemd/system/xpra-brokerd.service")"
finish
