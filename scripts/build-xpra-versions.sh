#!/usr/bin/env bash
# Builds the Xpra versions users run (5.0.8, the incident's; 6.5.3, current
# hosts) from the upstream tarballs in ../shared/xpra-src into private
# prefixes, for the xpra-versions tests. Debian 12 ships only 3.1.3.
#
#   ./scripts/build-xpra-versions.sh [--manifest FILE]
#   ./scripts/build-xpra-versions.sh --install-packages
#
# Each build goes to $XPRA_VERSIONS_CACHE/xpra-<version>-<sha256 prefix>
# (default /var/cache/xpra-broker-tests/xpra-versions: outside the clone so
# CI reuses it between clean clones, and readable by the test users, who run
# Xpra from it) and is reused when present: the key is the tarball's sha256
# (and for 6.x also Cython's), so a changed tarball builds afresh. The
# Debian packages the builds need are installed when missing (needs root).
#
# --manifest FILE writes "<version> <prefix>" lines the tests read; without
# sources it writes "absent <reason>" so the tests report SKIPPED with it.
# --install-packages only installs the Debian packages the builds need and
# exits (scripts/test.sh runs it before the tests, so that no apt-get of the
# build runs beside a test that installs packages).
#
# Debian's /usr/bin/python3 builds and runs them (not whatever python3 is
# first on PATH), with Debian's python3-gi, cairo, PIL and dbus.
#
# Exit codes: 0 built (or reused); 3 the sources are absent (nothing built:
# tests must report skipped, never passed); 1 anything else failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD

src_dir=${XPRA_SRC_DIR:-$repo_root/../shared/xpra-src}
cache_dir=${XPRA_VERSIONS_CACHE:-/var/cache/xpra-broker-tests/xpra-versions}
manifest=
packages_only=
while [ $# -gt 0 ]; do
  case $1 in
    --manifest) manifest=$2; shift 2 ;;
    --install-packages) packages_only=1; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-xpra-versions: unknown argument '$1' (try --help)" >&2; exit 1 ;;
  esac
done

versions=(5.0.8 6.5.3)
cython_tarball=$src_dir/cython-3.1.8.tar.xz

if [ ! -d "$src_dir" ] || [ ! -f "$src_dir/xpra-5.0.8.tar.xz" ] || [ ! -f "$src_dir/xpra-6.5.3.tar.xz" ] || [ ! -f "$cython_tarball" ]; then
  reason="Xpra sources absent: $src_dir has no xpra-5.0.8.tar.xz, xpra-6.5.3.tar.xz and cython-3.1.8.tar.xz (see docs/xpra-versions.md)"
  echo "build-xpra-versions: $reason; nothing built" >&2
  [ -z "$manifest" ] || echo "absent $reason" >"$manifest"
  exit 3
fi

# What the builds need from Debian 12 (../shared/xpra-src/README.md); cython3
# only for 5.x, 6.x brings its own Cython 3 (Debian 12 has 0.29).
build_packages=(gcc pkg-config python3-dev python3-setuptools libx11-dev libxtst-dev libxcomposite-dev
                libxdamage-dev libxres-dev libxkbfile-dev libxrandr-dev libxfixes-dev libxi-dev libxext-dev
                liblz4-dev libbrotli-dev libxxhash-dev libgtk-3-dev python-gi-dev python3-cairo-dev libwebp-dev
                libturbojpeg0-dev libpam0g-dev libsystemd-dev xvfb xauth python3-gi python3-gi-cairo gir1.2-gtk-3.0
                python3-cairo python3-pil python3-dbus python3-psutil cython3 xz-utils)

sha_of() { sha256sum "$1" | cut -c1-16; }
# The recipe (switches below) is part of the key: a changed recipe builds
# afresh instead of reusing a build made another way.
recipe_key() {
  local version=$1
  case $version in
    5.*) printf '%s\n' "${common_switches[@]}" "${switches_5[@]}" ;;
    6.*) printf '%s\n' "${common_switches[@]}" "${switches_6[@]}" ;;
  esac | sha256sum | cut -c1-8
}
prefix_of() {
  local version=$1 key
  key=$(sha_of "$src_dir/xpra-$version.tar.xz")
  case $version in 6.*) key=$key-cython$(sha_of "$cython_tarball") ;; esac
  echo "$cache_dir/xpra-$version-$key-r$(recipe_key "$version")"
}

install_build_packages() {
  local missing=() p
  for p in "${build_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "build-xpra-versions: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "build-xpra-versions: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Switches off what a headless test server does not need; an unknown switch
# fails only after ~50 s of cythonizing, so each version gets its own list.
common_switches=(--without-audio --without-printing --without-webcam --without-v4l2 --without-nvidia
                 --without-gstreamer --without-enc_x264 --without-openh264 --without-vpx --without-avif
                 --without-evdi --without-drm --without-csc_libyuv --without-docs --without-pandoc_lua
                 --without-opengl --without-example --without-Xdummy --without-uinput --without-quic
                 --without-proc --without-qrencode --without-tests --without-service --without-mdns
                 --without-strict
                 # Nor do the tests need these (issue 25, CI time): the shadow,
                 # RFB and proxy servers, the libwebp and libjpeg-turbo codecs
                 # (Pillow still encodes), vsock, and 5.x's Cython annotation
                 # pages (HTML reports of every module, on by default in 5.x).
                 --without-shadow --without-rfb --without-proxy --without-webp --without-jpeg_encoder
                 --without-jpeg_decoder --without-vsock --without-annotate)
switches_5=(--without-ffmpeg --without-dec_avcodec2 --without-csc_swscale --without-enc_ffmpeg --without-Xdummy_wrapper
            --without-enc_proxy)
switches_6=(--without-pytorch --without-wireshark --without-wayland_client --without-wayland_server)

build_one() {
  local version=$1 prefix=$2 work log start
  work=$(mktemp -d "$cache_dir/.build-$version.XXXXXX")
  log=$work/build.log
  start=$(date +%s)
  echo "build-xpra-versions: building Xpra $version into $prefix (log: $log)"
  tar -xJf "$src_dir/xpra-$version.tar.xz" -C "$work"
  local tree
  # git archive snapshots: setup.py at the top, or under one directory.
  tree=$(find "$work" -mindepth 1 -maxdepth 2 -name setup.py -printf '%h\n' | sort | head -n1)
  [ -n "$tree" ] || { echo "build-xpra-versions: no setup.py in xpra-$version.tar.xz" >&2; exit 1; }
  local -a env=(SETUPTOOLS_USE_DISTUTILS=stdlib NTHREADS=2)
  local -a switches=("${common_switches[@]}")
  case $version in
    5.*) switches+=("${switches_5[@]}") ;;
    6.*)
      # Every 6.x refuses Cython 0.29: Cython 3 runs uncompiled from its
      # tree, and setup.py calls a `cython` on PATH (--generate-shared).
      mkdir -p "$work/cython" "$work/bin"
      tar -xJf "$cython_tarball" -C "$work/cython"
      local cython_tree
      cython_tree=$(find "$work/cython" -mindepth 1 -maxdepth 2 -name cython.py -printf '%h\n' | sort | head -n1)
      [ -n "$cython_tree" ] || { echo "build-xpra-versions: no cython.py in $cython_tarball" >&2; exit 1; }
      printf '#!/bin/sh\nexec /usr/bin/python3 %s/cython.py "$@"\n' "$cython_tree" >"$work/bin/cython"
      chmod +x "$work/bin/cython"
      env+=(PYTHONPATH="$cython_tree" PATH="$work/bin:$PATH")
      switches+=("${switches_6[@]}") ;;
  esac
  rm -rf "$prefix"
  if ! (cd "$tree" && env "${env[@]}" nice -n 10 /usr/bin/python3 setup.py install --prefix="$prefix" --install-layout=deb \
          "${switches[@]}") >"$log" 2>&1; then
    echo "build-xpra-versions: building Xpra $version failed; the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  cp "$log" "$prefix/build.log"
  # Written last: a half-built prefix (an interrupted run) is never taken
  # for a cached one.
  touch "$prefix/.complete"
  rm -rf "$work"
  echo "build-xpra-versions: Xpra $version built in $(( $(date +%s) - start )) s"
}

if [ -n "$packages_only" ]; then
  install_build_packages
  exit 0
fi

mkdir -p "$cache_dir"
# One build at a time per cache (two clones' test runs may start together);
# the second finds the first's builds complete and reuses them.
exec 9>"$cache_dir/.lock"
flock 9
rm -rf "$cache_dir"/.build-*  # an earlier run's failed or interrupted work
# The test users run Xpra from the cache: it must be searchable. The parent
# too, but only the default's own (/var/cache/xpra-broker-tests): a cache
# given in XPRA_VERSIONS_CACHE may sit in a shared dir such as /var/tmp,
# whose mode (1777) is not ours to change.
chmod 755 "$cache_dir" 2>/dev/null || true
[ "$(dirname "$cache_dir")" != /var/cache/xpra-broker-tests ] || chmod 755 /var/cache/xpra-broker-tests
manifest_lines=()
needs_build=()
for version in "${versions[@]}"; do
  prefix=$(prefix_of "$version")
  [ -f "$prefix/.complete" ] || needs_build+=("$version")
  manifest_lines+=("$version $prefix")
done
if [ ${#needs_build[@]} -gt 0 ]; then
  install_build_packages
  # Side by side: a build keeps about one core busy on average (cythonizing
  # and setup.py's own steps are serial: 142 s + 195 s wall for 322 CPU-s on
  # an idle 2-core machine), so the second overlaps the first. Each one's
  # failure (its exit 1) is collected, and any fails the run.
  build_pids=()
  for version in "${needs_build[@]}"; do
    build_one "$version" "$(prefix_of "$version")" &
    build_pids+=($!)
  done
  failed=0
  for pid in "${build_pids[@]}"; do wait "$pid" || failed=1; done
  [ $failed -eq 0 ] || exit 1
fi
for line in "${manifest_lines[@]}"; do echo "build-xpra-versions: ready: Xpra ${line% *} in ${line#* }"; done
[ -z "$manifest" ] || printf '%s\n' "${manifest_lines[@]}" >"$manifest"
