#!/usr/bin/env bash
# The main job of v1sysid, end to end on one machine:
#   build -> images (natural-image stimuli) -> simulate (a digital V1 with known ground truth)
#         -> sweep (model search under MPI, one trial per rank) -> report (Table 1, figures)
# Installs missing Debian packages, builds with the `cpu-release` preset, then runs each step whose
# command exists in this build. Steps that have not landed yet are printed with the command they will run.
#
#   env/demo.sh [--out DIR] [--force]
#
#   --out DIR   where the results go (default ./out/demo)
#   --force     re-run steps whose output is complete (otherwise they are skipped) and let the
#               commands overwrite
#
# Environment: V1SYSID_JOBS (build jobs, default 2), V1SYSID_DEMO_RANKS (MPI ranks, default: all cores).
# A step is skipped only when its output is complete: an interrupted sweep is resumed on the next run, and
# the report is made again when results.h5 is newer.
set -euo pipefail

python=/usr/bin/python3   # Debian's interpreter: h5py and numpy come from Debian packages (env/install-deps.sh)

# setup <arguments...>: parses the arguments and sets the globals of the steps.
setup() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  repo=$(pwd)
  out=./out/demo
  force=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) [ $# -ge 2 ] || { echo "demo.sh: error: --out needs a folder" >&2; exit 2; }; out=$2; shift 2 ;;
      --out=*) out=${1#--out=}; shift ;;
      --force) force=1; shift ;;
      -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "demo.sh: error: unknown argument '$1'; see env/demo.sh --help" >&2; exit 2 ;;
    esac
  done

  preset=cpu-release
  exe="$repo/build/$preset/v1sysid"
  jobs=${V1SYSID_JOBS:-2}
  cores=$(nproc)
  ranks=${V1SYSID_DEMO_RANKS:-$cores}

  # ---- threads and MPI --------------------------------------------------------------------------------
  # Debian's Kokkos is Serial: a single process gets its parallelism from OpenBLAS threads; under MPI each
  # rank is one core, so BLAS and OpenMP use one thread per rank (set per step below).
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$cores}
  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$cores}
  export OMP_PROC_BIND=${OMP_PROC_BIND:-false}
  # An OpenMP build's threads must sleep between kernels and stay unbound, or they slow OpenBLAS's threads
  # (docs/performance.md).
  export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
  # OpenBLAS 0.3.21 takes AMD Zen 4/5 for Haswell (AVX2); its AVX-512 kernels are about 2x faster there.
  if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q '^vendor_id.*AuthenticAMD' /proc/cpuinfo 2>/dev/null &&
     grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=SkylakeX
  fi
  # Open MPI refuses to run as root unless told; containers and CI run as root.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpirun_cmd=(mpirun -np "$ranks" --bind-to core -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1)
  [ "$ranks" -le "$cores" ] || mpirun_cmd+=(--oversubscribe)
  force_flag=()
  [ "$force" = 0 ] || force_flag=(--force)
}

say() { printf '\n== demo.sh: %s\n' "$*"; }

# has_command <name>: the built executable lists this subcommand in its --help. (Asking
# `v1sysid <name> --help` is no test: the top-level --help answers for an unknown name too.)
has_command() {
  "$exe" --help 2>/dev/null | awk -v name="$1" '/^Subcommands:/ {in_list = 1; next}
                                              in_list && $1 == name {found = 1}
                                              END {exit !found}'
}

# ---- when a step is done: its output is complete, not merely there ------------------------------------
# file_done <file>: the file is there and not empty. The commands write to a temporary name and rename it
# when complete, so a finished run leaves nothing else; a 0-byte file never counts.
file_done() { [ -s "$1" ]; }

# sweep_done <results.h5>: every trial row has a final status (ok, diverged, failed, pruned). A missing, empty or
# unreadable file, a `pending` row or a status this check does not know (a retryable one) means the sweep has
# work left: running the same command again resumes exactly those rows.
sweep_done() {
  [ -s "$1" ] || return 1
  "$python" - "$1" 2>/dev/null <<'PY'
import sys

import h5py

with h5py.File(sys.argv[1], "r") as f:
    status = [s.decode() if isinstance(s, bytes) else str(s) for s in f["trials/status"][()]]
sys.exit(0 if all(s in ("ok", "diverged", "failed", "pruned") for s in status) else 1)
PY
}

# report_done <report.md> <results.h5>: the report is not empty and was made after the results last changed.
report_done() { [ -s "$1" ] && ! [ "$2" -nt "$1" ]; }

# run_step <name> <output> <done-check> <needs...> -- <command...>
# Skips when `<done-check> <output>` says the output is complete (unless --force); prints the planned command
# when a need is missing: a need is either "cmd:<subcommand>" (the executable has it) or a path that must
# exist. A 0-byte output is removed before the command runs (the commands refuse to overwrite a file).
run_step() {
  local name=$1 output=$2 done_check=$3; shift 3
  local missing=()
  while [ "$1" != "--" ]; do
    case "$1" in
      cmd:*) has_command "${1#cmd:}" || missing+=("v1sysid ${1#cmd:}") ;;
      *) [ -e "$1" ] || missing+=("$1") ;;
    esac
    shift
  done
  shift
  say "$name -> $output"
  if [ "$force" = 0 ] && "$done_check" "$output"; then
    echo "  complete, skipped (env/demo.sh --force re-runs it)"
    return 0
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "  planned: $*"
    echo "  (not yet available: ${missing[*]})"
    return 0
  fi
  if [ -f "$output" ] && [ ! -s "$output" ]; then
    echo "  removing the empty $output that an interrupted run left"
    rm -f "$output"
  elif [ -e "$output" ] && [ "$force" = 0 ]; then
    echo "  $output is not complete: running the step again"
  fi
  echo "  \$ $*"
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    # Say what a rerun does: a stopped sweep (75, or mpirun's 1 when it was signalled) resumes where it was.
    echo "demo.sh: step '$name' ended with exit status $rc (its message is above); run env/demo.sh again:" \
      "complete steps are skipped and an unfinished sweep resumes" >&2
    exit "$rc"
  fi
  echo "  done in $((SECONDS - t0)) s"
}

# ---- steps: one function each; outputs under $out ---------------------------------------------------
step_build() {
  say "install missing packages and build (preset $preset)"
  env/install-deps.sh
  cmake --preset "$preset" -Wno-dev >/dev/null
  cmake --build "build/$preset" -j "$jobs" --target v1sysid
  "$exe" --version
}

step_images() {
  env/fetch-photos.sh   # photographs from Debian packages, unpacked into a cache (never installed)
  run_step "images: natural-image stimuli" "$out/stimuli.h5" file_done cmd:images -- \
    "$exe" images --out "$out/stimuli.h5" "${force_flag[@]}"
}

step_simulate() {
  run_step "simulate: digital V1 with ground truth" "$out/digital_v1.h5" file_done \
    cmd:simulate "$repo/data/demo.yaml" "$out/stimuli.h5" -- \
    "$exe" simulate "$repo/data/demo.yaml" --stimuli "$out/stimuli.h5" \
    --out "$out/digital_v1.h5" "${force_flag[@]}"
}

# An unfinished results file (a stopped or killed sweep) is resumed: the sweep runs exactly the trials that are
# not finished.
step_sweep() {
  mkdir -p "$out/sweep"
  run_step "sweep: model search on $ranks MPI ranks" "$out/sweep/results.h5" sweep_done \
    cmd:sweep "$repo/sweeps/demo.yaml" "$out/digital_v1.h5" -- \
    "${mpirun_cmd[@]}" "$exe" sweep "$repo/sweeps/demo.yaml" --data "$out/digital_v1.h5" \
    --out "$out/sweep/results.h5" --save-checkpoints "$out/sweep/checkpoints" "${force_flag[@]}"
}

# report_current <report.md>: made after the sweep's results last changed.
report_current() { report_done "$1" "$out/sweep/results.h5"; }

step_report() {
  # Table 1 and Figs. 2-3 from results.h5; Figs. 4-6 and the digital-V1 checks (ARI against gt/cell_type,
  # orientation error) from the best trial's checkpoint, found in the sweep's --save-checkpoints folder.
  # A sweep that stopped early (a v1sysid older than exit status 75 exits 0 then) leaves no report.
  if [ -e "$out/sweep/results.h5" ] && ! sweep_done "$out/sweep/results.h5"; then
    echo "demo.sh: error: $out/sweep/results.h5 has unfinished trials (the sweep was stopped); run" \
      "env/demo.sh again to resume the sweep, then the report is made" >&2
    return 75
  fi
  run_step "report: Table 1 and figures" "$out/report/report.md" report_current \
    "$repo/analysis/report.py" "$out/sweep/results.h5" -- \
    "$python" "$repo/analysis/report.py" "$out/sweep/results.h5" \
    --checkpoint-dir "$out/sweep/checkpoints" --data "$out/digital_v1.h5" --exe "$exe" --out "$out/report"
}

main() {
  setup "$@"
  local t_all=$SECONDS
  step_build
  mkdir -p "$out"
  say "main job, outputs in $out (cores: $cores, MPI ranks: $ranks, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto})"
  step_images
  step_simulate
  step_sweep
  step_report

  say "the dataset reader that every step shares"
  echo "  \$ $exe info --help"
  "$exe" info --help
  say "finished in $((SECONDS - t_all)) s; outputs in $out"
}

# Sourced (tests/py/test_demo.py), the script only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
