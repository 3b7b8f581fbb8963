#!/usr/bin/env bash
# Runs `v1sysid bench` and the PyTorch peer (torch_peer.py) side by side with the same shapes and threads,
# interleaved (v1sysid, peer, v1sysid, peer, ...) so that both see the same machine load, and prints the
# per-pair ratios and their medians for training and inference images per second.
#
#   analysis/bench_compare.sh [--repeats R] [--v1sysid PATH] [--peer PATH] [--python PATH] [--] BENCH_OPTIONS...
#
# BENCH_OPTIONS are passed to both (e.g. --model cnn --neurons 6005 --batch 64 --threads 2 --steps 3);
# options only v1sysid knows (--warmup, --seed) are not passed to the peer. The environment (OPENBLAS_CORETYPE,
# OMP_NUM_THREADS, ...) is the same for both; the BLAS kernels both use are printed. Raw JSON lines go to
# ${BENCH_LOG:-bench_compare.jsonl} in the current folder.
set -euo pipefail

repeats=3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
v1sysid="${V1SYSID:-$here/build/cpu-release/v1sysid}"
peer="${TORCH_PEER:-$here/../shared/bench/torch_peer.py}"
python="${PYTHON:-/usr/bin/python3}"
log="${BENCH_LOG:-bench_compare.jsonl}"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeats) repeats="$2"; shift 2 ;;
    --v1sysid) v1sysid="$2"; shift 2 ;;
    --peer) peer="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    --) shift; args+=("$@"); break ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -x "$v1sysid" ]] || { echo "bench_compare.sh: no v1sysid at $v1sysid; build it (cmake --preset cpu-release && cmake --build build/cpu-release) or pass --v1sysid" >&2; exit 2; }
[[ -f "$peer" ]] || { echo "bench_compare.sh: no torch_peer.py at $peer; pass --peer PATH" >&2; exit 2; }

# The peer does not know --warmup / --seed: drop them (with their values) from its command line.
peer_args=()
skip=0
for a in "${args[@]}"; do
  if [[ $skip == 1 ]]; then skip=0; continue; fi
  case "$a" in --warmup|--seed) skip=1 ;; --warmup=*|--seed=*) ;; *) peer_args+=("$a") ;; esac
done

echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OMP_NUM_THREADS=${OMP_NUM_THREADS:-<unset>}; $repeats pairs; log $log" >&2
: > "$log"
for ((i = 1; i <= repeats; ++i)); do
  "$v1sysid" bench "${args[@]}" | tail -n 1 >> "$log"
  "$python" "$peer" "${peer_args[@]}" | tail -n 1 >> "$log"
done

"$python" - "$log" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
ours = [r for r in rows if r["peer"].startswith("v1sysid")]
theirs = [r for r in rows if not r["peer"].startswith("v1sysid")]
def med(xs): return statistics.median(xs) if xs else float("nan")
r0 = ours[0]
print(f"shapes: model {r0['model']}, neurons {r0['neurons']}, batch {r0['batch']}, {r0['height']} x {r0['width']}, "
      f"threads {r0['threads']}; {ours[0]['peer']} vs {theirs[0]['peer']}; BLAS: {r0.get('blas', '?')}")
print(f"{'pair':>4} {'train v1sysid':>14} {'train torch':>12} {'ratio':>6} {'infer v1sysid':>14} {'infer torch':>12} {'ratio':>6}")
tr, ir = [], []
for i, (a, b) in enumerate(zip(ours, theirs), 1):
    tr.append(a["train_images_per_s"] / b["train_images_per_s"])
    ir.append(a["infer_images_per_s"] / b["infer_images_per_s"])
    print(f"{i:>4} {a['train_images_per_s']:>14.2f} {b['train_images_per_s']:>12.2f} {tr[-1]:>6.2f} "
          f"{a['infer_images_per_s']:>14.2f} {b['infer_images_per_s']:>12.2f} {ir[-1]:>6.2f}")
print(f"median train images/s: v1sysid {med([a['train_images_per_s'] for a in ours]):.2f}, "
      f"torch {med([b['train_images_per_s'] for b in theirs]):.2f}, ratio {med(tr):.2f} (range {min(tr):.2f}-{max(tr):.2f})")
print(f"median infer images/s: v1sysid {med([a['infer_images_per_s'] for a in ours]):.2f}, "
      f"torch {med([b['infer_images_per_s'] for b in theirs]):.2f}, ratio {med(ir):.2f} (range {min(ir):.2f}-{max(ir):.2f})")
print(f"v1sysid GFLOP/s (analytic FLOPs): train {med([a['train_gflop_per_s'] for a in ours]):.0f}, "
      f"inference {med([a['infer_gflop_per_s'] for a in ours]):.0f}; torch at the same FLOPs: train "
      f"{med([b['train_images_per_s'] for b in theirs]) * r0['train_gflop_per_image']:.0f}, inference "
      f"{med([b['infer_images_per_s'] for b in theirs]) * r0['infer_gflop_per_image']:.0f}")
PY
