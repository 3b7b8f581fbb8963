#!/usr/bin/env python3
"""Extracts the image files (.jpg, .jpeg, .png, .webp) of Qt resource bundles (.rcc).

Usage: extract-rcc.py BUNDLE.rcc [BUNDLE.rcc ...]

Each BUNDLE.rcc is unpacked next to itself into the folder BUNDLE (the name without .rcc), keeping the paths
inside the bundle: usr/share/gcompris-qt/rcc/categorization.rcc holds gcompris/src/.../fish1.webp, which goes
to usr/share/gcompris-qt/rcc/categorization/gcompris/src/.../fish1.webp. env/fetch-photos.sh runs it on the
two gcompris-qt-data bundles whose photographs are in the curated list (src/sim/photos.cpp); the bytes written
are those stored in the bundle, so the photographs are decoded from the package's own files.

Standard library only. Format (Qt rcc versions 1-3): "qres", then version and the offsets of the tree, data
and names sections (big-endian u32); tree nodes of 14 (version 1) or 22 bytes (versions 2 and 3); node flag
2 = directory, 1 = zlib (qCompress: u32 length, then a zlib stream), 4 = zstd. Python's standard library has
no zstd; gcompris-qt-data 3.1 (bookworm) has no zstd entries, and a zstd image entry is reported and skipped
(exit status 3), so that a later gcompris build with zstd bundles shows up as missing photographs with a reason.
Exits 1 with a message naming the file on a file that is not a readable rcc bundle.
"""
import os
import struct
import sys
import zlib

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp')
FLAG_ZLIB, FLAG_DIRECTORY, FLAG_ZSTD = 1, 2, 4


class BundleError(Exception):
    pass


def extract(bundle):
    """Writes the bundle's images under its folder; returns (number written, zstd entries skipped)."""
    with open(bundle, 'rb') as f:
        b = f.read()
    if b[:4] != b'qres' or len(b) < 20:
        raise BundleError('not a Qt resource bundle (no "qres" header)')
    version, tree, data, names = struct.unpack('>IIII', b[4:20])
    if version not in (1, 2, 3):
        raise BundleError(f'rcc format version {version} is not supported (1-3 are)')
    node_size = 14 if version == 1 else 22
    outdir = bundle[:-len('.rcc')] if bundle.endswith('.rcc') else bundle + '.d'
    written, skipped = 0, []

    def name_at(offset):
        o = names + offset
        length = struct.unpack('>H', b[o:o + 2])[0]
        return b[o + 6:o + 6 + 2 * length].decode('utf-16-be')  # u16 length, u32 hash, UTF-16 name

    def walk(index, prefix, depth):
        nonlocal written
        if depth > 64:
            raise BundleError('directory tree deeper than 64 levels (corrupt bundle?)')
        o = tree + index * node_size
        name_offset, flags = struct.unpack('>IH', b[o:o + 6])
        name = name_at(name_offset) if index else ''
        if flags & FLAG_DIRECTORY:
            count, first = struct.unpack('>II', b[o + 6:o + 14])
            for child in range(count):
                walk(first + child, prefix + name + '/' if index else prefix, depth + 1)
            return
        path = prefix + name
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            return
        if '..' in path.split('/'):
            raise BundleError(f'entry {path!r} leaves the bundle folder')
        data_offset = struct.unpack('>I', b[o + 10:o + 14])[0]
        p = data + data_offset
        size = struct.unpack('>I', b[p:p + 4])[0]
        raw = b[p + 4:p + 4 + size]
        if len(raw) != size:
            raise BundleError(f'entry {path!r} is truncated')
        if flags & FLAG_ZSTD:
            skipped.append(path)
            return
        if flags & FLAG_ZLIB:
            raw = zlib.decompress(raw[4:])  # qCompress puts the uncompressed length first
        target = os.path.join(outdir, path.lstrip('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'wb') as out:
            out.write(raw)
        written += 1

    walk(0, '', 0)
    return written, skipped


def main(argv):
    if len(argv) < 2:
        print(__doc__.split('\n\n')[1], file=sys.stderr)
        return 2
    status = 0
    for bundle in argv[1:]:
        try:
            written, skipped = extract(bundle)
        except (OSError, BundleError, struct.error, zlib.error, UnicodeDecodeError) as e:
            print(f'extract-rcc: error: {bundle}: {e}', file=sys.stderr)
            return 1
        print(f'extract-rcc: {bundle}: {written} images')
        if skipped:
            print(f'extract-rcc: {bundle}: skipped {len(skipped)} zstd-compressed images (no zstd in Python\'s '
                  f'standard library): {", ".join(skipped[:5])}{" ..." if len(skipped) > 5 else ""}', file=sys.stderr)
            status = 3
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv))
