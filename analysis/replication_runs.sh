#!/usr/bin/env bash
# Runs the pre-registered replication (docs/replication/protocol.md) phase by phase, resumably:
#
#   analysis/replication_runs.sh dev  --out DIR    development phase (seed 2019): 4 regulariser draws x 3
#                                                  architectures at 25 % (sweeps/replication/dev.yaml)
#   analysis/replication_runs.sh test --out DIR    test phase (seeds 3101-3103): Table 1 / Fig. 3 on the main
#                                                  population, 25 % on the deep0 and absolute populations
#                                                  (sweeps/replication/test.yaml and test_25.yaml, written with
#                                                  the frozen settings after the development phase)
#   analysis/replication_runs.sh transfer --out DIR
#                                                  Lurz transfer (seeds 3101-3103): per seed the 9 animals of
#                                                  data/replication/transfer.yaml, the core on the matched and on
#                                                  the disjoint animals (transfer_core.yaml), then the target
#                                                  animal's runs (transfer_target.yaml, transfer_nulls.yaml)
#   analysis/replication_runs.sh status --out DIR  finished / running / pending trials of every sweep so far
#   analysis/replication_runs.sh manifest --out DIR
#                                                  DIR/manifest.json for analysis/replication.py (the sweeps of
#                                                  the test seeds that exist so far)
#   analysis/replication_runs.sh archive --out DIR
#                                                  copies every sweep's results file, saved states, checkpoints and
#                                                  log into the archive folder, to commit: the runs then outlive the
#                                                  machine (a working session may get a new one). Refuses while a
#                                                  sweep holds its results file's lock: stop it with SIGTERM first.
#   analysis/replication_runs.sh restore --out DIR
#                                                  copies every archived sweep that DIR lacks back into DIR (never
#                                                  over a results file DIR has). dev, test and transfer do this
#                                                  themselves before each sweep, so on a new machine the same
#                                                  command continues where the archive left off; the datasets are
#                                                  simulated again from their seeds, and a sweep refuses to resume
#                                                  if one came out different (its results file holds its digest).
#
# Options: --v1sysid PATH (default build/cpu-release/v1sysid; the test and transfer phases refuse a v1sysid not built
# from the commit the protocol fixes for them, below), --ranks N (default 2), --lanes L (default N),
# --seeds "S ..." (test and transfer phases; default the protocol's 3101 3102 3103), --archive FOLDER (default
# docs/replication/runs).
# Every step is skipped when its output is complete: stimulus and dataset files are written atomically, and a
# sweep resumes its pending trials when run again. So after a stop (end of a session, SIGTERM: exit 75), run
# the same command again. The N ranks of 1 thread (the protocol's 2 x 1) are shared by L lanes of N/L ranks, so
# that no rank waits while another finishes a sweep's last trial: the test phase gives each lane its own seeds
# (round robin), the transfer phase trains a seed's two cores (one trial each) side by side. A trial is a pure
# function of its sweep file, dataset and seed, so lanes change when a run happens, never what it computes.
# Stop: `kill -TERM` the sweep processes (`pkill -TERM -f '^\S*v1sysid\S* sweep'`); each saves its trials' states and
# exits 75, and so do its mpirun, its lane and this script. (Signalling mpirun works too, as it forwards SIGTERM to
# the sweep, but then mpirun exits 1.)
# Layout of DIR: stimuli_<S>.h5, <arm>_<S>.h5 (datasets), <sweep>_<arm>_<S>.h5 (results), ckpt/<sweep>_<arm>_<S>/
# (checkpoints of every trial, for analysis/replication.py), logs/; transfer: transfer_<S>-animal<k>.h5,
# transfer_core_{matched,disjoint}_<S>.h5, transfer_{target,nulls}_<S>.h5 (results) and transfer_<S>/ (the seed's
# target and null sweep files beside the core checkpoints they start from).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
v1sysid="$here/build/cpu-release/v1sysid"
out="" ranks=2 lanes="" seeds="3101 3102 3103" phase="${1:-}" archive="$here/docs/replication/runs"
die() { echo "replication_runs.sh: $*" >&2; exit 2; }
[[ "$phase" =~ ^(dev|test|transfer|status|manifest|archive|restore)$ ]] ||
  die "first argument: dev, test, transfer, status, manifest, archive or restore (see the header of $0)"
shift
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="${2:-}"; shift 2 ;;
    --v1sysid) v1sysid="${2:-}"; shift 2 ;;
    --ranks) ranks="${2:-}"; shift 2 ;;
    --lanes) lanes="${2:-}"; shift 2 ;;
    --seeds) seeds="${2:-}"; shift 2 ;;
    --archive) archive="${2:-}"; shift 2 ;;
    *) die "unknown option '$1'" ;;
  esac
done
[ -n "$out" ] || die "--out DIR is required"
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || die "--ranks must be a positive whole number, not '$ranks'"
lanes=${lanes:-$ranks}
[[ "$lanes" =~ ^[1-9][0-9]*$ ]] && [ $((ranks % lanes)) -eq 0 ] ||
  die "--lanes must be a positive whole number that divides --ranks ($ranks), not '$lanes'"
[ -n "$archive" ] || die "--archive FOLDER must not be empty"
[[ "$phase" =~ ^(archive|restore)$ ]] || [ -x "$v1sysid" ] || die "$v1sysid is not an executable; build it (cmake --preset cpu-release) or pass --v1sysid"
# The binaries the protocol fixes (docs/replication/protocol.md, the amendments "the binary" of 2026-12-06 and
# 2026-12-07): every run of a phase uses the v1sysid built from that commit, clean, and the phase refuses any other
# (another build would mix code versions within a phase, and a newer one upgrades the results files to a format
# the pinned one cannot resume).
declare -A pinned_commit=([test]=74a7a97 [transfer]=a35b863)
if [ -n "${pinned_commit[$phase]:-}" ]; then
  pin=${pinned_commit[$phase]}
  built="$("$v1sysid" --version 2>/dev/null | head -n 1)" || true
  [[ "$built" =~ \(git\ $pin[0-9a-f]*\)$ ]] || die "the $phase phase runs the v1sysid of commit $pin (protocol" \
    "amendments), and $v1sysid says '$built'; build that commit and pass it with --v1sysid: git worktree add" \
    "/tmp/v1sysid_$pin $pin && cd /tmp/v1sysid_$pin && cmake --preset cpu-release && cmake --build build/cpu-release" \
    "-j2 --target v1sysid"
fi
mkdir -p "$out/logs" "$out/ckpt"
out="$(cd "$out" && pwd)"
# One phase at a time on a runs folder: a second driver would simulate the same datasets and start the same sweeps
# (which refuse, holding their results file's lock) beside the first. The lock is the open file descriptor 9, held
# by this script, its lanes and the processes they start, and released when the last of them ends.
if [[ "$phase" =~ ^(dev|test|transfer|archive|restore)$ ]]; then
  exec 9>> "$out/replication_runs.lock"
  flock -n 9 || die "another replication_runs.sh phase is running on $out (or a sweep it started still runs); wait" \
    "for it to end, or stop it (see 'Stop' in the header of $0)"
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
lane_label=""  # "[test_seed 3102] " inside a lane: the lanes' lines share one log
say() { echo "replication_runs.sh: $lane_label$*"; }

stimuli() {  # stimuli SEED: 24 x 40 crops of the seed (protocol section 2)
  local f="$out/stimuli_$1.h5"
  [ -f "$f" ] || "$v1sysid" images --seed "$1" --height 24 --width 40 --out "$f" > "$out/logs/stimuli_$1.log" 2>&1
}

dataset() {  # dataset ARM SEED: simulate data/replication/ARM.yaml at SEED
  local f="$out/$1_$2.h5"
  stimuli "$2"
  [ -f "$f" ] || "$v1sysid" simulate "$here/data/replication/$1.yaml" --seed "$2" --stimuli "$out/stimuli_$2.h5" \
    --out "$f" > "$out/logs/simulate_$1_$2.log" 2>&1
}

# The files of one sweep, relative to DIR (and to the archive, which has the same layout): results file, saved
# states of its unfinished trials, checkpoints, log.
sweep_files() { echo "$1.h5" "$1.h5.states" "ckpt/$1" "logs/$1.log"; }

copy_sweep() {  # copy_sweep TAG FROM TO: replace TO's files of the sweep with FROM's (those FROM has)
  local tag=$1 from=$2 to=$3 rel
  for rel in $(sweep_files "$tag"); do
    rm -rf "${to:?}/$rel"
    if [ -e "$from/$rel" ]; then
      mkdir -p "$(dirname "$to/$rel")"
      cp -a "$from/$rel" "$to/$rel"
    fi
  done
}

restore() {  # restore TAG: bring an archived sweep into DIR when DIR has no results file of it
  local tag=$1
  [ -f "$archive/$tag.h5" ] && [ ! -e "$out/$tag.h5" ] || return 0
  copy_sweep "$tag" "$archive" "$out"
  say "restored sweep $tag from $archive"
}

archive_all() {  # every sweep of DIR into the archive; none while a sweep runs
  shopt -s nullglob
  local f tags=()
  for f in "$out"/dev_*.h5 "$out"/test_*.h5 "$out"/transfer_{core,target,nulls}_*.h5; do
    [ -e "$f.lock" ] && die "$f.lock exists: a sweep is writing $f. Stop it with SIGTERM (its states are saved) and" \
      "archive then; if no sweep runs (it was killed), the lock is stale: see its holder in the file and remove it"
    tags+=("$(basename "$f" .h5)")
  done
  [ "${#tags[@]}" -gt 0 ] || die "no sweep results in $out to archive"
  mkdir -p "$archive"
  for f in "${tags[@]}"; do copy_sweep "$f" "$out" "$archive"; done
  say "archived ${#tags[@]} sweeps into $archive ($(du -sh "$archive" | cut -f1)); commit that folder"
}

restore_all() {
  shopt -s nullglob
  local f n=0
  for f in "$archive"/*.h5; do
    if [ -e "$out/$(basename "$f")" ]; then
      say "kept $out/$(basename "$f") (already there; the archive's copy is not used)"
    else
      restore "$(basename "$f" .h5)"; n=$((n + 1))
    fi
  done
  say "restored $n sweeps from $archive"
}

run_sweep() {  # run_sweep TAG FILE DATA...: run (or resume) the sweep FILE on the datasets into DIR/TAG.h5
  local tag=$1 file=$2 status=0
  shift 2
  restore "$tag"
  local data=()
  for d in "$@"; do data+=(--data "$d"); done
  say "sweep $tag on $sweep_ranks rank(s) (log: $out/logs/$tag.log)"
  mpirun -np "$sweep_ranks" --oversubscribe --bind-to none "$v1sysid" sweep "$file" "${data[@]}" \
    --out "$out/$tag.h5" --save-checkpoints "$out/ckpt/$tag" >> "$out/logs/$tag.log" 2>&1 || status=$?
  tail -n 2 "$out/logs/$tag.log"
  [ "$status" = 0 ] || { say "sweep $tag stopped with exit $status; run the same command again to resume"; exit "$status"; }
}
sweep_ranks=$ranks

# in_lanes FUNCTION ITEM...: runs FUNCTION ITEM for every item, the items dealt round robin to the lanes, each lane
# a background process with ranks/lanes ranks; waits for all and exits with the first lane's failure.
in_lanes() {
  local function=$1 lane item status=0 pids=()
  shift
  local items=("$@")
  for ((lane = 0; lane < lanes; ++lane)); do
    (
      sweep_ranks=$((ranks / lanes))
      for ((k = lane; k < ${#items[@]}; k += lanes)); do
        item=${items[$k]}
        lane_label="[$function $item] "
        "$function" "$item"
      done
    ) &
    pids+=($!)
  done
  for lane in "${pids[@]}"; do
    wait "$lane" || { local rc=$?; [ "$status" != 0 ] || status=$rc; }
  done
  [ "$status" = 0 ] || { say "a lane stopped with exit $status; run the same command again to resume"; exit "$status"; }
}

test_seed() {  # test_seed SEED: Table 1 / Fig. 3 and the two variants of one test seed
  sweep test main "$1"
  sweep test_25 deep0 "$1"
  sweep test_25 absolute "$1"
}

sweep() {  # sweep NAME ARM SEED: run (or resume) sweeps/replication/NAME.yaml on ARM_SEED.h5
  local file="$here/sweeps/replication/$1.yaml"
  [ -f "$file" ] || die "$file does not exist: the test-phase sweeps are written with the frozen settings of the development phase (protocol section 4.1)"
  dataset "$2" "$3"
  run_sweep "$1_$2_$3" "$file" "$out/$2_$3.h5"
}

transfer_core() {  # transfer_core matched|disjoint: the core of $transfer_seed on animals 1-4 or 5-8
  local first=1 k animals=()
  [ "$1" = matched ] || first=5
  for ((k = first; k < first + 4; ++k)); do animals+=("$out/transfer_$transfer_seed-animal$k.h5"); done
  run_sweep "transfer_core_$1_$transfer_seed" "$here/sweeps/replication/transfer_core.yaml" "${animals[@]}"
}

transfer() {  # transfer SEED: the Lurz transfer runs of one test seed (protocol section 4.4)
  local s=$1 animal="$out/transfer_$1-animal" dir="$out/transfer_$1" f
  stimuli "$s"
  # The animals are written in order, each atomically: the last one there means all are.
  if [ ! -f "${animal}9.h5" ]; then
    "$v1sysid" simulate "$here/data/replication/transfer.yaml" --seed "$s" --stimuli "$out/stimuli_$s.h5" \
      --out "$out/transfer_$s.h5" --force > "$out/logs/simulate_transfer_$s.log" 2>&1
  fi
  transfer_seed=$s
  in_lanes transfer_core matched disjoint
  # The target and null sweeps name their cores relative to their own folder: one folder per seed with copies of
  # the sweep files (model paths made absolute) and of the two core checkpoints.
  mkdir -p "$dir"
  cp "$out/ckpt/transfer_core_matched_$s/trial_0.h5" "$dir/core_matched.h5"
  cp "$out/ckpt/transfer_core_disjoint_$s/trial_0.h5" "$dir/core_disjoint.h5"
  for f in transfer_target transfer_nulls; do
    sed "s|\.\./models/|$here/sweeps/models/|" "$here/sweeps/replication/$f.yaml" > "$dir/$f.yaml"
    run_sweep "${f}_$s" "$dir/$f.yaml" "${animal}9.h5"
  done
}

case "$phase" in
  dev) sweep dev main 2019 ;;
  test)
    in_lanes test_seed $seeds ;;
  transfer)
    for s in $seeds; do transfer "$s"; done ;;
  archive) archive_all ;;
  restore) restore_all ;;
  status)  # the first line of `v1sysid status` for every sweep so far (finished, running, pending, ETA)
    shopt -s nullglob
    for f in "$out"/dev_*.h5 "$out"/test_*.h5 "$out"/transfer_{core,target,nulls}_*.h5; do
      "$v1sysid" status "$f" 2>&1 | head -n 1
    done ;;
  manifest)
    /usr/bin/python3 - "$out" $seeds <<'EOF'
import json, os, sys
out, seeds = sys.argv[1], sys.argv[2:]
def arm(name, sweep, seed):
    results = f"{sweep}_{name}_{seed}.h5"
    if not os.path.exists(os.path.join(out, results)):
        return None
    return {"data": f"{name}_{seed}.h5",
            "sweeps": [{"results": results, "checkpoints": f"ckpt/{sweep}_{name}_{seed}"}]}
manifest = {"simulator_seeds": [int(s) for s in seeds], "work": "work", "seeds": {}}
if os.path.exists(os.path.join(out, "dev_main_2019.h5")):
    manifest["development"] = [{"results": "dev_main_2019.h5", "seed": 2019}]
for s in seeds:
    arms = {k: v for k, v in (("main", arm("main", "test", s)), ("deep0", arm("deep0", "test_25", s)),
                              ("absolute", arm("absolute", "test_25", s))) if v}
    # The transfer arm: the target's runs and the two cores (listed with their compute), where they exist.
    transfer = [{"results": f"transfer_{name}_{s}.h5", "checkpoints": f"ckpt/transfer_{name}_{s}"}
                for name in ("target", "nulls", "core_matched", "core_disjoint")
                if os.path.exists(os.path.join(out, f"transfer_{name}_{s}.h5"))]
    if transfer:
        arms["transfer"] = {"data": f"transfer_{s}-animal9.h5", "sweeps": transfer}
    if arms:
        manifest["seeds"][s] = arms
path = os.path.join(out, "manifest.json")
with open(path + ".partial", "w") as f:
    json.dump(manifest, f, indent=1)
os.replace(path + ".partial", path)
print(f"replication_runs.sh: wrote {path} ({len(manifest['seeds'])} seeds with runs)")
EOF
    ;;
esac
