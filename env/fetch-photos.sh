#!/usr/bin/env bash
# Fetches the licence-clean photographs that `v1sysid images` cuts into natural-image stimuli.
#
# Twelve Debian bookworm (main) packages ship them, the licence-clean combination of the survey in
# docs/stimuli/photo-survey.md (CC0, public-domain, CC-BY or permissive, each with a per-file or per-directory
# licence statement; share-alike, copyleft and uncertain photographs are left out), plus imagemagick-6-common
# for the copyright file that covers imagemagick-6-doc's photo. They are downloaded with `apt-get download`
# and unpacked with `dpkg-deb -x` into a cache folder; they are never installed, so none of their
# dependencies are pulled in. data/ATTRIBUTION.md lists the photos, src/sim/photos.cpp curates them.
# gcompris-qt-data keeps its photos (WebP) inside Qt resource bundles; env/extract-rcc.py (python3, standard
# library only) unpacks the two bundles used into folders next to them, and `v1sysid images` decodes WebP
# with libwebp.
#
# Cache folder: $V1SYSID_PHOTO_CACHE, default /var/cache/v1sysid/photos. Layout afterwards:
#   <cache>/debs/<package>_<version>_<arch>.deb     the downloaded archives
#   <cache>/<package>/usr/...                       each package unpacked on its own
#   <cache>/.<package>.unpacked                     stamp: archive name and number of files unpacked
# Idempotent: a package whose stamp matches what is on disk is left alone, an archive already downloaded
# is not downloaded again, and a run with everything in place only checks and exits. apt-get update runs
# only when the download fails for lack of (current) package lists. When the packages cannot be had the
# script says why and exits non-zero.
set -euo pipefail

packages=(python3-skimage lomiri-wallpapers-16.04 gcompris-qt-data tuxtype-data scribus-template palapeli-data
  libjxl-testdata python3-sklearn tuxpaint-data puzzle-jigsaw python-matplotlib-data imagemagick-6-doc
  imagemagick-6-common)
# Qt resource bundles unpacked after dpkg-deb, per package (paths inside the unpacked package).
declare -A rcc_bundles=(
  [gcompris-qt-data]="usr/share/gcompris-qt/rcc/categorization.rcc usr/share/gcompris-qt/rcc/explore_world_animals.rcc"
)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${V1SYSID_PHOTO_CACHE:-/var/cache/v1sysid/photos}"

say() { echo "fetch-photos: $*"; }
fail() { echo "fetch-photos: error: $*" >&2; exit 1; }

newest_deb() { ls -t "$cache/debs/${1}"_*.deb 2>/dev/null | head -n 1; }
file_count() { find "$cache/$1" -type f 2>/dev/null | wc -l; }
stamp_of() { echo "$cache/.$1.unpacked"; }

is_unpacked() {
  local p=$1 deb stamp
  deb=$(newest_deb "$p")
  stamp=$(stamp_of "$p")
  [ -n "$deb" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(basename "$deb") $(file_count "$p")" ]
}

all_done=1
for p in "${packages[@]}"; do is_unpacked "$p" || all_done=0; done
if [ "$all_done" = 1 ]; then
  say "photos already unpacked in $cache"
  exit 0
fi

command -v apt-get >/dev/null || fail "apt-get not found; this script needs a Debian (bookworm) system"
command -v dpkg-deb >/dev/null || fail "dpkg-deb not found; this script needs a Debian (bookworm) system"
command -v python3 >/dev/null || fail "python3 not found; it unpacks the gcompris-qt-data bundles (apt-get install python3)"
mkdir -p "$cache/debs" 2>/dev/null || fail "cannot create $cache; run as root or set V1SYSID_PHOTO_CACHE to a writable folder"
[ -w "$cache" ] || fail "$cache is not writable; run as root or set V1SYSID_PHOTO_CACHE to a writable folder"

missing=()
for p in "${packages[@]}"; do [ -n "$(newest_deb "$p")" ] || missing+=("$p"); done

download() {
  # apt-get download needs no root, only the package lists; it writes into the current directory.
  (cd "$cache/debs" && apt-get download -q "${missing[@]}")
}

if [ ${#missing[@]} -gt 0 ]; then
  say "downloading ${missing[*]} into $cache/debs"
  if ! log=$(download 2>&1); then
    if echo "$log" | grep -q -E "Unable to locate package|Can't select|has no installation candidate|Failed to fetch|404"; then
      say "package lists missing or stale; running apt-get update"
      [ "$(id -u)" -eq 0 ] || fail "apt-get update needs root; run 'sudo apt-get update' and then this script again"
      apt-get update -q >/dev/null 2>&1 || fail "apt-get update failed; is a Debian mirror reachable?"
      if ! log=$(download 2>&1); then
        echo "$log" >&2
        fail "could not download ${missing[*]} (Debian bookworm main); without them 'v1sysid images' has no photographs (its only alternative, '--procedural dead_leaves', is not natural images)"
      fi
    else
      echo "$log" >&2
      fail "could not download ${missing[*]}; is a Debian mirror reachable?"
    fi
  fi
fi

for p in "${packages[@]}"; do
  is_unpacked "$p" && continue
  deb=$(newest_deb "$p")
  [ -n "$deb" ] || fail "apt-get download left no .deb for $p in $cache/debs"
  rm -rf "${cache:?}/$p" "$(stamp_of "$p")"
  mkdir -p "$cache/$p"
  if ! dpkg-deb -x "$deb" "$cache/$p"; then
    rm -f "$deb"
    fail "dpkg-deb -x $(basename "$deb") failed (truncated download?); the archive was removed, run this script again"
  fi
  for bundle in ${rcc_bundles[$p]:-}; do
    [ -f "$cache/$p/$bundle" ] || fail "$(basename "$deb") has no $bundle (a different gcompris-qt-data version?); the photo list in src/sim/photos.cpp expects version 3.1"
    # Exit status 3: some images were zstd-compressed and skipped (listed on stderr); the photos that are
    # there are kept, and 'v1sysid images' names any curated one that is missing.
    rc=0
    python3 "$here/extract-rcc.py" "$cache/$p/$bundle" >/dev/null || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "could not unpack $cache/$p/$bundle (see the message above)"
  done
  # The stamp counts the files after unpacking the bundles, so an interrupted run is redone.
  echo "$(basename "$deb") $(file_count "$p")" >"$(stamp_of "$p")"
  say "unpacked $(basename "$deb") into $cache/$p"
done

say "done; photos are in $cache ('v1sysid images' finds them there, or pass --photos $cache)"
