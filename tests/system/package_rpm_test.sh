#!/usr/bin/env bash
# Where rpmbuild is installed (RHEL hosts, or Debian with the rpm package),
# CPack also builds an .rpm: no setuid or setgid file, the config file marked
# %config(noreplace), the scriptlets that create the user and /run/xpra, and
# the same files as the .deb. Skipped without rpmbuild.
source "$(dirname "$0")/lib.sh"
require_root
command -v rpmbuild >/dev/null || skip "rpmbuild not installed (the RPM generator is only enabled with it)"
command -v cpack >/dev/null || skip "cpack not installed"
make_scratch package-rpm
ensure_package_build
grep -q '^RPMBUILD_EXECUTABLE:FILEPATH=/' "$PKG_BUILD/CMakeCache.txt" ||
  cmake "$PKG_BUILD" >/dev/null  # rpmbuild installed after the tree was configured
(cd "$PKG_BUILD" && cpack -G RPM -B "$SCRATCH/out") >"$SCRATCH/cpack.log" 2>&1 ||
  { cat "$SCRATCH/cpack.log" >&2; fail "cpack -G RPM failed"; finish; }
rpms=("$SCRATCH"/out/*.rpm)
expect_eq "number of .rpm files" 1 "${#rpms[@]}"
RPM=${rpms[0]}
log "      built $(basename "$RPM")"

rpm -qlvp "$RPM" >"$SCRATCH/contents" 2>/dev/null
check "no setuid or setgid file in the package" bash -c "! awk '{print \$1}' '$SCRATCH/contents' | grep -q '^...[sS]\|^......[sS]'"
for f in /usr/sbin/xpra-brokerd /usr/bin/xpra-request-display /usr/lib/sysusers.d/xpra-broker.conf \
  /usr/lib/tmpfiles.d/xpra-broker.conf /etc/xpra/broker.conf; do
  check "package contains $f" grep -q " $f\$" "$SCRATCH/contents"
done
check "package contains the units" grep -q "/systemd/system/xpra-brokerd.socket\$" "$SCRATCH/contents"
check "package masks Xpra's tmpfiles rule" grep -q " /etc/tmpfiles.d/xpra.conf -> /dev/null\$" "$SCRATCH/contents"
owned_dirs=$(awk '$1 ~ /^d/ { print $NF }' "$SCRATCH/contents" | grep -v '^/usr/lib/\.build-id' | tr '\n' ' ')
expect_eq "directories the package owns" "/usr/share/doc/xpra-broker " "$owned_dirs"
check "the tmpfiles mask is not a %config file" bash -c "! rpm -qcp '$RPM' 2>/dev/null | grep -q tmpfiles"
expect_eq "config files" "/etc/xpra/broker.conf" "$(rpm -qcp "$RPM" 2>/dev/null)"
rpm -qp --scripts "$RPM" >"$SCRATCH/scripts" 2>/dev/null
check "%post creates the user (systemd-sysusers)" grep -q "systemd-sysusers xpra-broker.conf" "$SCRATCH/scripts"
check "%post creates /run/xpra (systemd-tmpfiles)" grep -q "systemd-tmpfiles --create xpra-broker.conf" "$SCRATCH/scripts"
check "%post enables the socket only under systemd" grep -q "/run/systemd/system" "$SCRATCH/scripts"
log "      Requires: $(rpm -qp --requires "$RPM" 2>/dev/null | tr '\n' ' ')"
check "Requires lists libcap" bash -c "rpm -qp --requires '$RPM' 2>/dev/null | grep -q libcap"
finish
