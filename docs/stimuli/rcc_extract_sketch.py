#!/usr/bin/env python3
"""Extract image files from Qt resource (.rcc) bundles, e.g. gcompris-qt-data's usr/share/gcompris-qt/rcc/*.rcc.

Usage: photos_survey_rcc_extract.py OUTDIR FILE.rcc [FILE.rcc ...]
Writes <OUTDIR>/<path inside the bundle> for .jpg/.jpeg/.png/.webp entries and prints how many it wrote.
Format (Qt rcc v1-v3): "qres", version, tree/data/names offsets (big-endian u32); tree nodes of 14 (v1) or 22 (v2+)
bytes; flag 2 = directory, flag 1 = zlib (qCompress: u32 length + zlib stream), flag 4 = zstd.
gcompris-qt-data 3.1-2 (bookworm) uses zlib or no compression only (checked: no zstd entries), so no extra module is needed.
Survey helper written on 2026-12-06; not part of the project.
"""
import os, struct, sys, zlib

EXTS = ('.jpg', '.jpeg', '.png', '.webp', '.JPG', '.PNG')


def extract(path, outdir, exts=EXTS):
    b = open(path, 'rb').read()
    if b[:4] != b'qres':
        raise ValueError(f'{path}: not a Qt rcc file')
    ver, tree, data, names = struct.unpack('>IIII', b[4:20])
    node_size = 14 if ver == 1 else 22

    def name(off):
        o = names + off
        n = struct.unpack('>H', b[o:o + 2])[0]
        return b[o + 6:o + 6 + 2 * n].decode('utf-16-be')

    out = []

    def walk(idx, prefix):
        o = tree + idx * node_size
        noff, flags = struct.unpack('>IH', b[o:o + 6])
        nm = name(noff) if idx else ''
        if flags & 2:
            count, first = struct.unpack('>II', b[o + 6:o + 14])
            for c in range(count):
                walk(first + c, prefix + nm + '/' if idx else prefix)
            return
        doff = struct.unpack('>I', b[o + 10:o + 14])[0]
        p = data + doff
        size = struct.unpack('>I', b[p:p + 4])[0]
        raw = b[p + 4:p + 4 + size]
        fn = prefix + nm
        if not fn.endswith(exts):
            return
        if flags & 1:
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            import zstandard  # only needed for zstd-compressed bundles
            raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 28)
        dst = os.path.join(outdir, fn.lstrip('/'))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, 'wb') as f:
            f.write(raw)
        out.append(fn)

    walk(0, '')
    return out


if __name__ == '__main__':
    total = sum(len(extract(f, sys.argv[1])) for f in sys.argv[2:])
    print(total)
