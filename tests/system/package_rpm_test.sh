#!/usr/bin/env bash
# Where rpmbuild is installed (RHEL hosts, or Debian with the rpm package),
# packaging/rpm/xpra-broker.spec builds an .rpm: no setuid or setgid file,
# the config file %config(noreplace), the licence, the scriptlets systemd's
# macros make (on Debian: the spec's fallbacks of the same definitions), the
# triggers that keep Xpra's tmpfiles rule from reopening /run/xpra, and the
# same files as the .deb. rpmbuild runs with --nodeps: Debian's rpm database
# knows none of the build dependencies, which are installed as .debs.
source "$(dirname "$0")/lib.sh"
require_root
command -v rpmbuild >/dev/null || skip "rpmbuild not installed"
make_scratch package-rpm
TOP=$SCRATCH/rpmbuild
SPEC=$XPB_SOURCE_DIR/packaging/rpm/xpra-broker.spec
version=$(awk '$1 == "Version:" { print $2 }' "$SPEC")
mkdir -p "$TOP/SOURCES"
copy_source_tree "$SCRATCH/xpra-broker-$version"
tar -C "$SCRATCH" -czf "$TOP/SOURCES/xpra-broker-$version.tar.gz" "xpra-broker-$version"
cp "$XPB_SOURCE_DIR/packaging/rpm/xpra-broker.preset" "$TOP/SOURCES/"
cp "$XPB_SOURCE_DIR/packaging/sysusers.d/xpra-broker.conf" "$TOP/SOURCES/xpra-broker.sysusers"
cp "$XPB_SOURCE_DIR/packaging/tmpfiles.d/xpra-broker.conf" "$TOP/SOURCES/xpra-broker.tmpfiles"
start=$SECONDS
# -O0 -g0: the test is about the package, not the code (which the .deb and
# every other test build optimized); it halves the compile, the bulk of this
# test's time.
rpmbuild -bb --nodeps --define "_topdir $TOP" --define "_smp_mflags -j2" --define "optflags -O0 -g0" "$SPEC" \
  >"$SCRATCH/rpmbuild.log" 2>&1 ||
  { tail -40 "$SCRATCH/rpmbuild.log" >&2; fail "rpmbuild -bb failed"; finish; }
rpms=("$TOP"/RPMS/*/xpra-broker-"$version"-*.rpm)
expect_eq "number of .rpm files" 1 "${#rpms[@]}"
RPM=${rpms[0]}
log "      built $(basename "$RPM") in $((SECONDS - start)) s"
check "rpmbuild warned about nothing" bash -c "! grep -i '^warning' '$SCRATCH/rpmbuild.log'"

rpm -qlvp "$RPM" >"$SCRATCH/contents" 2>/dev/null
check "no setuid or setgid file in the package" bash -c "! awk '{print \$1}' '$SCRATCH/contents' | grep -q '^...[sS]\|^......[sS]'"
libdir=$(rpm --eval '%{_libdir}')
for f in /usr/sbin/xpra-brokerd /usr/bin/xpra-request-display /usr/lib/sysusers.d/xpra-broker.conf \
  /usr/lib/tmpfiles.d/xpra-broker.conf /etc/xpra/broker.conf /usr/lib/systemd/system/xpra-brokerd.service \
  /usr/lib/systemd/system/xpra-brokerd.socket /usr/lib/systemd/system-preset/80-xpra-broker.preset \
  "$libdir/security/pam_xpra_broker.so" /usr/share/man/man1/xpra-request-display.1 \
  /usr/share/man/man5/xpra-broker.conf.5 /usr/share/man/man8/xpra-brokerd.8 /usr/share/man/man8/pam_xpra_broker.8 \
  /usr/share/bash-completion/completions/xpra-request-display /usr/share/doc/xpra-broker/deployment.md \
  /usr/share/doc/xpra-broker/examples/broker.conf /usr/share/xpra-broker/prometheus/xpra-broker.rules.yml; do
  check "package contains $f" grep -q " $f\$" "$SCRATCH/contents"
done
check "package contains the licence" grep -q "/usr/share/licenses/xpra-broker[^/]*/LICENSE\$" "$SCRATCH/contents"
check "nothing in /etc/tmpfiles.d (an admin's directory)" bash -c "! grep -q ' /etc/tmpfiles.d' '$SCRATCH/contents'"
owned_dirs=$(awk '$1 ~ /^d/ { print $NF }' "$SCRATCH/contents" | grep -v '^/usr/lib/\.build-id' | grep -v '^/usr/share/licenses/' | tr '\n' ' ')
expect_eq "directories the package owns" "/etc/xpra /usr/share/doc/xpra-broker /usr/share/doc/xpra-broker/examples \
/usr/share/xpra-broker /usr/share/xpra-broker/jupyter /usr/share/xpra-broker/jupyter/jupyter_xpra_broker_proxy \
/usr/share/xpra-broker/jupyter/jupyter_xpra_broker_proxy/xdg /usr/share/xpra-broker/jupyter/jupyter_xpra_broker_proxy/xdg/xpra \
/usr/share/xpra-broker/prometheus " "$owned_dirs"
expect_eq "config files" "/etc/xpra/broker.conf" "$(rpm -qcp "$RPM" 2>/dev/null)"
check "broker.conf is %config(noreplace)" bash -c "rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' '$RPM' 2>/dev/null | grep -qx 'cn /etc/xpra/broker.conf'"
expect_eq "License" "GPL-2.0-or-later" "$(rpm -qp --qf '%{LICENSE}' "$RPM" 2>/dev/null)"

rpm -qp --scripts --triggers --filetriggers "$RPM" >"$SCRATCH/scripts" 2>/dev/null
check "%pre creates the user from the sysusers file (%sysusers_create_package)" \
  grep -q "systemd-sysusers --replace=/usr/lib/sysusers.d/xpra-broker.conf -" "$SCRATCH/scripts"
check "... with the file's own lines" grep -q "^u xpra-broker -" "$SCRATCH/scripts"
check "%post creates /run/xpra (%tmpfiles_create_package)" \
  grep -q "systemd-tmpfiles --replace=/usr/lib/tmpfiles.d/xpra-broker.conf --create -" "$SCRATCH/scripts"
check "%post presets the units on install (%systemd_post)" grep -Eq "preset.* xpra-brokerd.socket xpra-brokerd.service" "$SCRATCH/scripts"
check "%preun disables and stops them on removal (%systemd_preun)" grep -Eq "(disable --now|remove-system-units).* xpra-brokerd.socket" "$SCRATCH/scripts"
check "%postun restarts only the service on upgrade (%systemd_postun_with_restart)" \
  grep -Eq "(try-restart|mark-restart-system-units) xpra-brokerd.service" "$SCRATCH/scripts"
check "no macro left unexpanded" bash -c "! grep -E '%(systemd|sysusers|tmpfiles)_' '$SCRATCH/scripts'"
check "Xpra's rule is followed by the broker's (file trigger)" grep -q "transfiletriggerin.* -- /usr/lib/tmpfiles.d/xpra.conf" "$SCRATCH/scripts"
check "... and package trigger" grep -q "triggerin.* -- xpra$" "$SCRATCH/scripts"
check "the preset enables the socket" grep -qx "enable xpra-brokerd.socket" "$XPB_SOURCE_DIR/packaging/rpm/xpra-broker.preset"
log "      Requires: $(rpm -qp --requires "$RPM" 2>/dev/null | tr '\n' ' ')"
check "Requires lists libcap" bash -c "rpm -qp --requires '$RPM' 2>/dev/null | grep -q libcap"
finish
