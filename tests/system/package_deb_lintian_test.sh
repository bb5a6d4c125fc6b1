#!/usr/bin/env bash
# lintian on the packages system.package_deb_build made (fixture
# deb_packages), with every tag shown (-EvIL +pedantic): no error may
# remain. The other tags are printed with the counts; docs/deployment.md
# ("lintian") lists them and why each is acceptable.
source "$(dirname "$0")/lib.sh"
require_root
command -v lintian >/dev/null || skip "lintian not installed (scripts/install-deps.sh installs it)"
make_scratch package-deb-lintian
changes=("$DEB_AREA"/N/*.changes)
[[ -f ${changes[0]} ]] || { fail "no .changes in $DEB_AREA/N: system.package_deb_build did not run"; finish; }

# lintian warns that it runs as root (the tests do); that line is no tag.
rc=0
# TMPDIR (exported: lintian's helpers too): lintian leaves its ELF caches
# (mldbm-elf-*) in the temporary directory; in the scratch dir they go with
# it.
export TMPDIR=$SCRATCH
lintian --fail-on none -EvIL +pedantic --show-overrides "${changes[0]}" >"$SCRATCH/lintian.out" \
  2>"$SCRATCH/lintian.err" || rc=$?
expect_eq "lintian exit code" 0 "$rc"
grep -v "running with root privileges" "$SCRATCH/lintian.err" >&2 || true
count() { grep -c "^$1: " "$SCRATCH/lintian.out" || true; }
log "--- lintian on $(basename "${changes[0]}") and its .debs:"
cat "$SCRATCH/lintian.out" >&2
log "lintian summary: $(count E) errors, $(count W) warnings, $(count I) info, $(count P) pedantic, $(count X) experimental, $(count O) overridden"
expect_eq "lintian errors" 0 "$(count E)"

# The count above must be able to see an error: the same .deb without its
# copyright file is one (no-copyright-file).
deb=$(ls "$DEB_AREA"/N/xpra-broker_*.deb)
dpkg-deb -R "$deb" "$SCRATCH/broken"
rm "$SCRATCH/broken/usr/share/doc/xpra-broker/copyright"
sed -i '\|/usr/share/doc/xpra-broker/copyright$|d' "$SCRATCH/broken/DEBIAN/md5sums"
dpkg-deb -b "$SCRATCH/broken" "$SCRATCH/broken.deb" >/dev/null
lintian --fail-on none "$SCRATCH/broken.deb" >"$SCRATCH/lintian.out" 2>/dev/null || true
check "lintian reports a .deb without copyright as an error (sanity check of this test)" \
  grep -q "^E: xpra-broker: no-copyright-file" "$SCRATCH/lintian.out"
finish
