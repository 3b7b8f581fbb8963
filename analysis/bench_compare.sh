#!/usr/bin/env bash
# Runs `v1sysid bench` and the PyTorch peer (torch_peer.py) side by side with the same shapes and threads,
# interleaved (v1sysid, peer, v1sysid, peer, ...) so that both see the same machine load, and prints the
# per-pair ratios and their medians for training and inference images per second.
#
#   analysis/bench_compare.sh [--repeats R] [--v1sysid [LABEL=]PATH]... [--peer PATH] [--python PATH] [--]
#                             BENCH_OPTIONS...
#
# BENCH_OPTIONS are passed to both (e.g. --model cnn --neurons 6005 --batch 64 --threads 2 --steps 3);
# options only v1sysid knows (--warmup, --seed) are not passed to the peer. The environment (OPENBLAS_CORETYPE,
# OMP_NUM_THREADS, ...) is the same for both; the BLAS kernels both use are printed. Raw JSON lines go to
# ${BENCH_LOG:-bench_compare.jsonl} in the current folder.
# --v1sysid may be given several times (e.g. serial=build/ci/v1sysid openmp=build/openmp-release/v1sysid):
# each round then runs every build once and the peer once, and every build is compared with the peer and with
# the first build.
set -euo pipefail

repeats=3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
builds=()
peer="${TORCH_PEER:-$here/../shared/bench/torch_peer.py}"
python="${PYTHON:-/usr/bin/python3}"
log="${BENCH_LOG:-bench_compare.jsonl}"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeats) repeats="$2"; shift 2 ;;
    --v1sysid) builds+=("$2"); shift 2 ;;
    --peer) peer="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    --) shift; args+=("$@"); break ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ ${#builds[@]} -gt 0 ]] || builds=("${V1SYSID:-$here/build/cpu-release/v1sysid}")
labels=() paths=()
for b in "${builds[@]}"; do
  if [[ "$b" == *=* ]]; then labels+=("${b%%=*}"); paths+=("${b#*=}"); else labels+=("v1sysid"); paths+=("$b"); fi
  [[ -x "${paths[-1]}" ]] || { echo "bench_compare.sh: no v1sysid at ${paths[-1]}; build it (cmake --preset cpu-release && cmake --build build/cpu-release) or pass --v1sysid" >&2; exit 2; }
done
[[ $(printf '%s\n' "${labels[@]}" | sort | uniq -d | wc -l) == 0 ]] ||
  { echo "bench_compare.sh: give each --v1sysid its own LABEL= when there are several" >&2; exit 2; }
[[ -f "$peer" ]] || { echo "bench_compare.sh: no torch_peer.py at $peer; pass --peer PATH" >&2; exit 2; }

# The peer does not know --warmup / --seed: drop them (with their values) from its command line.
peer_args=()
skip=0
for a in "${args[@]}"; do
  if [[ $skip == 1 ]]; then skip=0; continue; fi
  case "$a" in --warmup|--seed) skip=1 ;; --warmup=*|--seed=*) ;; *) peer_args+=("$a") ;; esac
done

echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OMP_NUM_THREADS=${OMP_NUM_THREADS:-<unset>}; $repeats rounds; log $log" >&2
: > "$log"
for ((i = 1; i <= repeats; ++i)); do
  for k in "${!paths[@]}"; do
    row=$("${paths[$k]}" bench "${args[@]}" | tail -n 1)
    printf '{"label": "%s", "round": %d, "row": %s}\n' "${labels[$k]}" "$i" "$row" >> "$log"
  done
  row=$("$python" "$peer" "${peer_args[@]}" | tail -n 1)
  printf '{"label": "torch", "round": %d, "row": %s}\n' "$i" "$row" >> "$log"
done

"$python" - "$log" <<'PY'
import json, statistics, sys
entries = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
labels = list(dict.fromkeys(e["label"] for e in entries))  # builds in command-line order, then torch
rows = {label: {e["round"]: e["row"] for e in entries if e["label"] == label} for label in labels}
rounds = sorted(rows["torch"])
def med(xs): return statistics.median(xs) if xs else float("nan")
def rate(label, key): return [rows[label][r][key] for r in rounds]
builds = [label for label in labels if label != "torch"]
r0 = rows[builds[0]][rounds[0]]
print(f"shapes: model {r0['model']}, neurons {r0['neurons']}, batch {r0['batch']}, {r0['height']} x {r0['width']}, "
      f"threads {r0['threads']}; {', '.join(f'{b} = ' + rows[b][rounds[0]]['peer'] for b in builds)} vs "
      f"{rows['torch'][rounds[0]]['peer']}; BLAS: {r0.get('blas', '?')}; {len(rounds)} rounds")
print(f"{'build':>10} {'train img/s':>12} {'infer img/s':>12}  {'train / torch':>20}  {'infer / torch':>20}"
      f"  {'train / ' + builds[0]:>20}  {'infer / ' + builds[0]:>20}")
def ratio_text(a, b):
    q = [x / y for x, y in zip(a, b)]
    return f"{med(q):.2f} ({min(q):.2f}-{max(q):.2f})"
for label in labels:
    t, i = rate(label, "train_images_per_s"), rate(label, "infer_images_per_s")
    line = f"{label:>10} {med(t):>12.2f} {med(i):>12.2f}"
    if label != "torch":
        line += f"  {ratio_text(t, rate('torch', 'train_images_per_s')):>20}  {ratio_text(i, rate('torch', 'infer_images_per_s')):>20}"
        if label != builds[0]:
            line += (f"  {ratio_text(t, rate(builds[0], 'train_images_per_s')):>20}"
                     f"  {ratio_text(i, rate(builds[0], 'infer_images_per_s')):>20}")
    print(line)
for label in builds:
    print(f"{label} GFLOP/s (analytic FLOPs): train {med(rate(label, 'train_gflop_per_s')):.0f}, inference "
          f"{med(rate(label, 'infer_gflop_per_s')):.0f}")
print(f"torch at the same FLOPs: train {med(rate('torch', 'train_images_per_s')) * r0['train_gflop_per_image']:.0f}, "
      f"inference {med(rate('torch', 'infer_images_per_s')) * r0['infer_gflop_per_image']:.0f}")
PY
