#!/usr/bin/env bash
# Builds Kokkos 3.4 with the OpenMP (+ Serial) backend, and KokkosKernels against it, from Debian's own
# `trilinos` source package, into a cached install prefix. Debian's binary Kokkos is Serial only, which
# hides data races in kernels; env/test.sh runs the suite a second time against this build.
#
#   env/build-kokkos-openmp.sh [--force]
#
# Environment:
#   V1SYSID_KOKKOS_OPENMP_PREFIX  install prefix (default /var/cache/v1sysid/kokkos-openmp-3.4)
#   V1SYSID_KOKKOS_OPENMP_WORK    download/build folder (default <prefix>.work; the source tarball stays there)
#   V1SYSID_JOBS                  parallel compile jobs (default 2)
#   V1SYSID_DEBIAN_MIRROR         Debian mirror for deb-src (default: the one /etc/apt already uses)
#
# Cached: a stamp in the prefix records the recipe; a re-run with the same recipe returns at once.
# The system's apt configuration and state are never touched: the deb-src list, the package lists and the
# apt cache all live in the work folder.
#
# Exit status: 0 built or up to date; 3 the trilinos source package could not be had (no network, no
# mirror); anything else: the build failed (the log tail is printed).
set -euo pipefail

readonly recipe_version=1
prefix=${V1SYSID_KOKKOS_OPENMP_PREFIX:-/var/cache/v1sysid/kokkos-openmp-3.4}
work=${V1SYSID_KOKKOS_OPENMP_WORK:-${prefix}.work}
jobs=${V1SYSID_JOBS:-2}
force=0

for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-kokkos-openmp: error: unknown argument '$arg'; usage: $0 [--force]" >&2; exit 2 ;;
  esac
done

log() { echo "build-kokkos-openmp: $*"; }
die() { echo "build-kokkos-openmp: error: $*" >&2; exit 1; }

cxx=${CXX:-c++}
command -v "$cxx" >/dev/null || die "no C++ compiler '$cxx'; run env/install-deps.sh"
command -v cmake >/dev/null || die "cmake not found; run env/install-deps.sh"

kokkos_options=(
  -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=OFF
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DCMAKE_INSTALL_LIBDIR=lib
  -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON
  -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF
)
# No explicit template instantiation (ETI): v1sysid uses LayoutRight Views, which KokkosKernels 3.4 never
# pre-instantiates by default, and gemm on host goes to the BLAS TPL either way. This is what Debian's
# build gives us for float/LayoutRight too, and it keeps this build to about a minute instead of many.
kernels_options=(
  -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=OFF
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DCMAKE_INSTALL_LIBDIR=lib
  -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_EXAMPLES=OFF
  -DKokkosKernels_ENABLE_TPL_BLAS=ON -DBLA_VENDOR=OpenBLAS
  -DKokkosKernels_ADD_DEFAULT_ETI=OFF
  -DKokkosKernels_INST_DOUBLE=OFF -DKokkosKernels_INST_FLOAT=OFF
  -DKokkosKernels_INST_COMPLEX_DOUBLE=OFF -DKokkosKernels_INST_COMPLEX_FLOAT=OFF
  -DKokkosKernels_INST_LAYOUTLEFT=OFF -DKokkosKernels_INST_LAYOUTRIGHT=OFF
)

# What the stamp records: a change to any of these rebuilds the prefix.
recipe="recipe=${recipe_version}
cxx=$("$cxx" --version | head -n1)
cmake=$(cmake --version | head -n1)
kokkos=${kokkos_options[*]}
kernels=${kernels_options[*]}"
stamp="$prefix/.v1sysid-stamp"

is_up_to_date() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] &&
    [ -f "$prefix/lib/cmake/Kokkos/KokkosConfig.cmake" ] &&
    [ -f "$prefix/lib/cmake/KokkosKernels/KokkosKernelsConfig.cmake" ]
}

if [ "$force" = 0 ] && is_up_to_date; then
  log "up to date in $prefix"
  exit 0
fi

mkdir -p "$work" "$(dirname "$prefix")" 2>/dev/null ||
  die "cannot create $work; run as root or set V1SYSID_KOKKOS_OPENMP_PREFIX to a writable folder"
[ -w "$work" ] || die "$work is not writable; run as root or set V1SYSID_KOKKOS_OPENMP_PREFIX"

# One build at a time (two env/test.sh runs may start together); the second waits, then finds the stamp.
exec 9>"$work/.lock"
flock 9
if [ "$force" = 0 ] && is_up_to_date; then
  log "up to date in $prefix (built by a concurrent run)"
  exit 0
fi

t_start=$SECONDS
logs="$work/logs"
mkdir -p "$logs"

# ---- 1. the source package, through a private apt configuration ------------------------------------
# Reuse the Debian mirror the system already uses (deb822 .sources or one-line .list), as deb-src.
mirror_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # First URIs line of a stanza whose Suites do not name a -security suite.
    uri=$(awk 'BEGIN{RS=""; FS="\n"}
               /Suites:[^\n]*bookworm/ && !/Suites:[^\n]*-security/ {
                 for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, a, " "); print a[2]; exit } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 !~ /security/ && $0 ~ /debian/ {
                 for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file|ftp):/) { print $i; exit } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  echo "http://deb.debian.org/debian"
}

codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-bookworm}")
codename=${codename:-bookworm}
uri=${V1SYSID_DEBIAN_MIRROR:-$(mirror_uri)}
apt_dir="$work/apt"
src_dir="$work/download"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src_dir"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] $uri $codename main" > "$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
)
# apt downloads as the unprivileged _apt user when run as root; let it write into our folders.
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chown _apt "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src_dir"
fi

source_unavailable() {
  echo "build-kokkos-openmp: the Debian 'trilinos' source package could not be downloaded from $uri" \
       "($1); see $logs/apt.log. The OpenMP Kokkos build is skipped." >&2
  exit 3
}

tarball=$(ls "$src_dir"/trilinos_*.orig.tar.* 2>/dev/null | head -n1 || true)
if [ -z "$tarball" ]; then
  log "downloading Debian's trilinos source package (deb-src $uri $codename main; private apt state in $apt_dir)"
  t0=$SECONDS
  apt-get "${apt_opts[@]}" -q update > "$logs/apt.log" 2>&1 || source_unavailable "apt-get update failed"
  (cd "$src_dir" && apt-get "${apt_opts[@]}" -q source --download-only trilinos >> "$logs/apt.log" 2>&1) ||
    source_unavailable "apt-get source failed"
  tarball=$(ls "$src_dir"/trilinos_*.orig.tar.* 2>/dev/null | head -n1 || true)
  [ -n "$tarball" ] || source_unavailable "no trilinos_*.orig.tar.* after apt-get source"
  log "downloaded $(basename "$tarball") in $((SECONDS - t0)) s"
else
  log "using cached $(basename "$tarball")"
fi
# The package's only Debian patch that touches Kokkos (fix_kokkos_test_declarations.patch) edits the
# TriBITS test declarations, which a standalone build never reads, so the orig tarball is used as is.

# ---- 2. unpack only packages/kokkos and packages/kokkos-kernels -------------------------------------
tree="$work/trilinos"
rm -rf "$tree"
mkdir -p "$tree"
t0=$SECONDS
tar -xf "$tarball" -C "$tree" --strip-components=1 --wildcards \
    '*/packages/kokkos/*' '*/packages/kokkos-kernels/*'
[ -f "$tree/packages/kokkos/CMakeLists.txt" ] && [ -f "$tree/packages/kokkos-kernels/CMakeLists.txt" ] ||
  die "$(basename "$tarball") has no packages/kokkos or packages/kokkos-kernels"
kokkos_version=$(sed -n 's/^set(Kokkos_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' \
                 "$tree/packages/kokkos/CMakeLists.txt" | paste -sd.)
log "unpacked Kokkos ${kokkos_version:-?} and KokkosKernels in $((SECONDS - t0)) s"

# ---- 3. build and install -----------------------------------------------------------------------------
run_logged() {  # run_logged <log name> <command...>
  local name=$1; shift
  if ! "$@" > "$logs/$name.log" 2>&1; then
    echo "build-kokkos-openmp: error: step '$name' failed; last lines of $logs/$name.log:" >&2
    tail -n 40 "$logs/$name.log" >&2
    exit 1
  fi
}

rm -rf "$prefix" "$work/build-kokkos" "$work/build-kernels"

t0=$SECONDS
run_logged kokkos-configure cmake -S "$tree/packages/kokkos" -B "$work/build-kokkos" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_INSTALL_PREFIX="$prefix" "${kokkos_options[@]}"
run_logged kokkos-build cmake --build "$work/build-kokkos" -j "$jobs"
run_logged kokkos-install cmake --install "$work/build-kokkos"
log "Kokkos (OpenMP + Serial) built and installed in $((SECONDS - t0)) s"

t0=$SECONDS
run_logged kernels-configure cmake -S "$tree/packages/kokkos-kernels" -B "$work/build-kernels" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_INSTALL_PREFIX="$prefix" -DKokkos_ROOT="$prefix" \
  -DCMAKE_PREFIX_PATH="$prefix" "${kernels_options[@]}"
run_logged kernels-build cmake --build "$work/build-kernels" -j "$jobs"
run_logged kernels-install cmake --install "$work/build-kernels"
log "KokkosKernels (BLAS TPL: OpenBLAS, no ETI) built and installed in $((SECONDS - t0)) s"

# The builds and the unpacked tree are not needed any more; the tarball stays for a --force rebuild.
rm -rf "$tree" "$work/build-kokkos" "$work/build-kernels"
printf '%s\n' "$recipe" > "$stamp"
log "done in $((SECONDS - t_start)) s: $prefix (use it with: V1SYSID_KOKKOS_OPENMP_PREFIX=$prefix cmake --preset openmp-release)"
