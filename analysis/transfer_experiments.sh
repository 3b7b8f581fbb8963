#!/usr/bin/env bash
# The two transfer experiments of issue 6 on a digital V1 of five simulated animals (data/transfer.yaml: same
# cell-type mix, own neurons, receptive-field positions and images), with the stacked2d core and Gaussian
# readout of sweeps/models/lurz_transfer.yaml:
#
#  a. Lurz et al. 2021: a core with one readout per animal trained on animals 1-4 together; for animal 5,
#     new readouts on that frozen core (--init-core --freeze-core) and direct training of a whole model, each
#     on fractions of animal 5's training images. Claim: transfer with 40 % of the data matches or beats
#     direct training on all of it.
#  b. Ecker et al. 2019: on animal 1, a model of all neurons; a core trained on the first half of the
#     neurons (--neurons 0:H), frozen, with readouts fitted for the second half (--neurons H:). Claim: on the
#     second half the transfer model's test correlation is within 0.02 of the full model's.
#
#   analysis/transfer_experiments.sh --out DIR [--quick] [--resume | --force] [--stimuli FILE] [--seed S]
#                                    [--jobs J] [--v1sysid PATH] [--data-config FILE] [--model FILE]
#                                    [--fractions "F1 F2 ..."] [--experiments lurz|ecker|both]
#                                    [--target-neurons A:B]
#
#   --out DIR       results: DIR/transfer_results.{json,md}, DIR/transfer_curve.png; runs/, evals/, logs/, data/
#   --quick         CI size: data/transfer_quick.yaml and sweeps/models/lurz_transfer_quick.yaml, 3 fractions
#   --resume        continue in a DIR of an earlier run: finished steps (their output files exist) are kept
#   --force         start over in a non-empty DIR (removes this script's outputs there, nothing else)
#   --stimuli FILE  stimulus file of `v1sysid images` (default: made in DIR/stimuli.h5)
#   --seed S        training seed of every run (default 1); --jobs J trainings at once (default 2)
#   --data-config FILE, --model FILE, --fractions "F..."
#                   another simulation config (n_animals: 5), model YAML or list of fractions (1.0 last)
#                   instead of the defaults of the chosen size
#   --experiments E lurz (a. only), ecker (b. only) or both (default); the other one's trainings are skipped
#   --target-neurons A:B
#                   a. only: animal 5's transfer and direct models are trained and scored on its neurons A:B
#                   (train/evaluate --neurons), while the core learns from all neurons of animals 1-4; as in
#                   Lurz et al. 2021 (Fig. 4: 1,000 neurons of a new scan against a core of four scans of
#                   thousands each), the core then sees many more neurons than the new animal has
#
# Every training runs single-threaded (OPENBLAS_NUM_THREADS=1); OPENBLAS_CORETYPE as env/demo.sh sets it.
# Each training writes its progress (epoch, losses, ETA) to DIR/logs/NAME.log; `tail -f` follows it.
# Steps write their outputs atomically (train and evaluate rename finished files), so an interrupted run
# continues with --resume. Test correlation is Ecker's (repeat-averaged responses of the test images);
# the fraction oracle is Lurz's metric. Both are in the tables.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
v1sysid="${V1SYSID:-$here/build/cpu-release/v1sysid}"
python=/usr/bin/python3
out="" quick=0 resume=0 force=0 stimuli="" seed=1 max_jobs=2 data_config_option="" model_option="" fractions_option=""
experiments=both target_neurons=""
die() { echo "transfer_experiments.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="${2:-}"; shift 2 ;;
    --quick) quick=1; shift ;;
    --resume) resume=1; shift ;;
    --force) force=1; shift ;;
    --stimuli) stimuli="${2:-}"; shift 2 ;;
    --seed) seed="${2:-}"; shift 2 ;;
    --jobs) max_jobs="${2:-}"; shift 2 ;;
    --v1sysid) v1sysid="${2:-}"; shift 2 ;;
    --data-config) data_config_option="${2:-}"; shift 2 ;;
    --model) model_option="${2:-}"; shift 2 ;;
    --fractions) fractions_option="${2:-}"; shift 2 ;;
    --experiments) experiments="${2:-}"; shift 2 ;;
    --target-neurons) target_neurons="${2:-}"; shift 2 ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) die "unknown option '$1'; see --help" ;;
  esac
done
[[ -n "$out" ]] || die "--out DIR is required; see --help"
[[ "$seed" =~ ^[0-9]+$ ]] || die "--seed '$seed' is not a non-negative integer"
[[ "$max_jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs '$max_jobs' is not a positive integer"
[[ "$experiments" =~ ^(lurz|ecker|both)$ ]] || die "--experiments '$experiments' is not lurz, ecker or both"
[[ -z "$target_neurons" || "$target_neurons" =~ ^[0-9]*:[0-9]*$ ]] ||
  die "--target-neurons '$target_neurons' is not a range A:B of neuron indices (e.g. 0:200)"
run_lurz=0 run_ecker=0
[[ "$experiments" == ecker ]] || run_lurz=1
[[ "$experiments" == lurz ]] || run_ecker=1
(( resume && force )) && die "--resume keeps finished steps, --force removes them: pass one of them"
[[ -x "$v1sysid" ]] || die "no v1sysid at $v1sysid; build it (cmake --preset cpu-release && cmake --build build/cpu-release -j2) or pass --v1sysid PATH"
[[ -z "$stimuli" || -f "$stimuli" ]] || die "--stimuli $stimuli does not exist; make one with 'v1sysid images --out FILE' or leave --stimuli out"

if (( quick )); then
  data_config="$here/data/transfer_quick.yaml" model="$here/sweeps/models/lurz_transfer_quick.yaml"
  fractions=(0.25 0.4 1.0)
else
  data_config="$here/data/transfer.yaml" model="$here/sweeps/models/lurz_transfer.yaml"
  fractions=(0.1 0.25 0.4 0.7 1.0)
fi
if [[ -n "$data_config_option" ]]; then
  [[ -f "$data_config_option" ]] || die "--data-config $data_config_option does not exist"
  data_config="$(cd "$(dirname "$data_config_option")" && pwd)/$(basename "$data_config_option")"
fi
if [[ -n "$model_option" ]]; then
  [[ -f "$model_option" ]] || die "--model $model_option does not exist"
  model="$(cd "$(dirname "$model_option")" && pwd)/$(basename "$model_option")"
fi
if [[ -n "$fractions_option" ]]; then
  read -r -a fractions <<< "$fractions_option"
  for f in "${fractions[@]}"; do
    [[ "$f" =~ ^(0\.[0-9]*[1-9][0-9]*|1\.0|1)$ ]] || die "--fractions: '$f' is not a number in (0, 1]; write e.g. --fractions \"0.25 0.4 1.0\""
  done
  [[ "${fractions[-1]}" == 1.0 ]] || die "--fractions must end with 1.0 (direct training on all data is the reference)"
fi

# The outputs of this script in DIR (--force removes these and only these).
owned=(data runs evals logs stimuli.h5 transfer_results.json transfer_results.md transfer_curve.png)
if [[ -d "$out" && -n "$(ls -A "$out")" ]]; then
  if (( force )); then
    for name in "${owned[@]}"; do rm -rf "${out:?}/$name"; done
  elif (( ! resume )); then
    die "$out exists and is not empty; pass --resume to continue an earlier run there, --force to start over, or choose another --out"
  fi
fi
mkdir -p "$out"/{data,runs,evals,logs}
out="$(cd "$out" && pwd)"

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_PROC_BIND=false
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q '^vendor_id.*AuthenticAMD' /proc/cpuinfo 2>/dev/null &&
   grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX  # OpenBLAS 0.3.21 takes AMD Zen 4/5 for Haswell (env/demo.sh)
fi
start_time=$SECONDS
say() { printf '[transfer %5ds] %s\n' $((SECONDS - start_time)) "$*"; }
say "out $out; $( ((quick)) && echo quick || echo full) size; experiments $experiments; seed $seed; $max_jobs trainings at once; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"

# ---- data ---------------------------------------------------------------------------------------------------
if [[ -z "$stimuli" ]]; then
  stimuli="$out/stimuli.h5"
  if [[ ! -f "$stimuli" ]]; then
    say "images -> $stimuli"
    "$v1sysid" images --out "$stimuli" > "$out/logs/images.log" 2>&1 || { tail -n 5 "$out/logs/images.log" >&2; exit 1; }
  fi
fi
animal() { echo "$out/data/v1-animal$1.h5"; }
if [[ ! -f "$(animal 5)" ]]; then
  say "simulate $(basename "$data_config") -> $out/data/v1-animal{1..5}.h5"
  "$v1sysid" simulate "$data_config" --stimuli "$stimuli" --out "$out/data/v1.h5" --force > "$out/logs/simulate.log" 2>&1 ||
    { tail -n 5 "$out/logs/simulate.log" >&2; exit 1; }
fi
# info FILE KEY...: one field of `v1sysid info --json FILE` (KEY... is the path into the JSON object).
info() {
  local file="$1"
  shift
  "$v1sysid" info --json "$file" | "$python" -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[key]
print(value)' "$@"
}
n_neurons=$(info "$(animal 1)" neurons)
target_total=$(info "$(animal 5)" neurons)  # may differ from animals 1-4 (data/transfer_many.yaml)
train_images=$(info "$(animal 5)" trials train)
half=$((n_neurons / 2))

# ---- jobs: train, then evaluate; at most max_jobs at once --------------------------------------------------
# job NAME EVAL_DATA "EVAL_OPTIONS" TRAIN_ARGS...: trains into runs/NAME and evaluates the checkpoint on
# EVAL_DATA into evals/NAME.json, in the background. A job whose evals/NAME.json exists is done already.
declare -A pid_of
jobs_total=0 jobs_done=0
job() {
  local name="$1" eval_data="$2" eval_options="$3"
  shift 3
  jobs_total=$((jobs_total + 1))
  [[ -f "$out/evals/$name.json" ]] && { jobs_done=$((jobs_done + 1)); return 0; }
  while (( $(jobs -rp | wc -l) >= max_jobs )); do wait -n || true; done
  say "start $name (progress: $out/logs/$name.log)"
  (
    log="$out/logs/$name.log"
    t0=$SECONDS
    if [[ ! -f "$out/runs/$name/checkpoint.h5" ]]; then
      # The trainer's progress lines (epoch, loss, validation, ETA) go to the log: `tail -f` follows a run.
      "$v1sysid" train "$model" "$@" --seed "$seed" --out "$out/runs/$name" --force > "$log" 2>&1 ||
        { say "FAILED $name (train; see $log): $(tail -n 1 "$log")"; exit 1; }
    fi
    # shellcheck disable=SC2086  # eval_options is a list of words
    "$v1sysid" evaluate --checkpoint "$out/runs/$name/checkpoint.h5" --data "$eval_data" $eval_options --json \
      > "$out/evals/$name.json.partial" 2>> "$log" || { say "FAILED $name (evaluate; see $log)"; exit 1; }
    mv "$out/evals/$name.json.partial" "$out/evals/$name.json"
    say "done  $name ($((SECONDS - t0)) s): $("$python" -c 'import json, sys; e = json.load(open(sys.argv[1]))
print("test correlation %.3f, fraction oracle %.3f, %d neurons" % (e["test_correlation"], e["fraction_oracle"], e["n_neurons"]))' "$out/evals/$name.json")"
  ) &
  pid_of[$name]=$!
}
# Waits for job NAME (already finished or never started: returns at once).
await() { [[ -n "${pid_of[$1]:-}" ]] && { wait "${pid_of[$1]}" 2>/dev/null || true; }; return 0; }

# The longest job first (four animals), the runs that need no core next, the transfers when their core is done.
# The trainings of each experiment, named as in runs/, evals/ and logs/ (the tables below read this list).
lurz_runs=() ecker_runs=()
if (( run_lurz )); then
  lurz_runs=(core)
  for f in "${fractions[@]}"; do lurz_runs+=("transfer_f$f" "direct_f$f"); done
fi
(( run_ecker )) && ecker_runs=(ecker_full ecker_half_core ecker_half_transfer)
(( run_lurz )) && job core "$(animal 4)" "" --data "$(animal 1)" --data "$(animal 2)" --data "$(animal 3)" --data "$(animal 4)"
if (( run_ecker )); then
  job ecker_full "$(animal 1)" "--neurons $half:" --data "$(animal 1)"
  job ecker_half_core "$(animal 1)" "" --data "$(animal 1)" --neurons ":$half"
fi
# Animal 5's neurons (--target-neurons): the same subset for training and scoring.
target_train=() target_eval=""
[[ -n "$target_neurons" ]] && target_train=(--neurons "$target_neurons") target_eval="--neurons $target_neurons"
if (( run_lurz )); then
  for ((k = ${#fractions[@]} - 1; k >= 0; --k)); do
    f=${fractions[k]}
    job "direct_f$f" "$(animal 5)" "$target_eval" --data "$(animal 5)" --data-fraction "$f" "${target_train[@]}"
  done
fi
if (( run_ecker )); then
  await ecker_half_core
  job ecker_half_transfer "$(animal 1)" "" --data "$(animal 1)" --neurons "$half:" \
    --init-core "$out/runs/ecker_half_core/checkpoint.h5" --freeze-core
fi
if (( run_lurz )); then
  await core
  for ((k = ${#fractions[@]} - 1; k >= 0; --k)); do
    f=${fractions[k]}
    job "transfer_f$f" "$(animal 5)" "$target_eval" --data "$(animal 5)" --data-fraction "$f" "${target_train[@]}" \
      --init-core "$out/runs/core/checkpoint.h5" --freeze-core
  done
fi
wait
missing=()
for name in "${lurz_runs[@]}" "${ecker_runs[@]}"; do
  [[ -f "$out/evals/$name.json" ]] || missing+=("$name")
done
(( ${#missing[@]} == 0 )) || { say "failed: ${missing[*]} (logs in $out/logs; rerun with --resume)"; exit 1; }
say "all $jobs_total trainings done ($jobs_done of them from an earlier run)"

# ---- tables, JSON, figure --------------------------------------------------------------------------------------
"$python" - "$out" "$here" "$data_config" "$model" "$seed" "$n_neurons" "$half" "$train_images" \
  "$((SECONDS - start_time))" "$jobs_done" "$quick" "$("$v1sysid" --version | head -n 1)" "$experiments" \
  "$target_neurons" "$target_total" "${lurz_runs[*]} ${ecker_runs[*]}" "${fractions[@]}" <<'PY'
import json, os, sys

out, repo, data_config, model, seed, n_neurons, half, train_images, wall, reused, quick, version, experiments, \
    target_neurons, target_total = sys.argv[1:16]
runs = sys.argv[16].split()
fractions = sys.argv[17:]
seed, n_neurons, half, train_images, wall, reused, target_total = map(
    int, (seed, n_neurons, half, train_images, wall, reused, target_total))
quick = quick == "1"
run_lurz, run_ecker = experiments in ("lurz", "both"), experiments in ("ecker", "both")
ev = lambda name: json.load(open(os.path.join(out, "evals", name + ".json")))
metrics = lambda name: json.load(open(os.path.join(out, "runs", name, "metrics.json")))
keep = ("test_correlation", "fraction_oracle", "single_trial_correlation", "feve", "ceiling_fraction", "n_neurons")
pick = lambda e: {k: e[k] for k in keep if k in e}

curve, lurz, ecker = [], None, None
for f in (fractions if run_lurz else []):
    m_t, m_d = metrics("transfer_f" + f), metrics("direct_f" + f)
    curve.append({"fraction": float(f), "train_images": int(round(float(f) * train_images)),
                  "transfer": dict(pick(ev("transfer_f" + f)), epochs=m_t["iterations"], wall_seconds=m_t["wall_seconds"]),
                  "direct": dict(pick(ev("direct_f" + f)), epochs=m_d["iterations"], wall_seconds=m_d["wall_seconds"])})
at = lambda f, kind: next(c[kind]["test_correlation"] for c in curve if abs(c["fraction"] - f) < 1e-9)
if run_lurz:
    lurz = {"core": {"datasets": {k: pick(v) for k, v in metrics("core")["datasets"].items()},
                     "epochs": metrics("core")["iterations"]},
            "curve": curve}
if run_lurz and any(abs(float(f) - 0.4) < 1e-9 for f in fractions):
    t40, d100 = at(0.4, "transfer"), at(1.0, "direct")
    lurz["claim"] = {"statement": "transfer with 40 % of the data matches (within 0.01) or beats direct training on all of it",
                     "transfer_at_0.4": t40, "direct_at_1.0": d100, "difference": t40 - d100,
                     "holds": t40 >= d100 - 0.01}
if run_ecker:
    full2, tr2 = ev("ecker_full"), ev("ecker_half_transfer")
    ecker = {"dataset": "v1-animal1", "neurons": n_neurons, "core_neurons": f"0:{half}", "evaluated_neurons": f"{half}:{n_neurons}",
             "full_model": pick(full2), "transfer_model": pick(tr2), "half_core_on_its_own_neurons": pick(ev("ecker_half_core")),
             "difference": tr2["test_correlation"] - full2["test_correlation"]}
    ecker["claim"] = {"statement": "on the second half, transfer is within 0.02 of the full model (test correlation)",
                      "holds": abs(ecker["difference"]) <= 0.02}
# Runs that the epoch cap ended while they were still improving (best epoch = last epoch).
capped = [r for r in runs if metrics(r)["status"] == "max_iterations" and metrics(r)["best_iteration"] == metrics(r)["iterations"]]
result = {"config": {"data_config": os.path.relpath(data_config, repo), "model": os.path.relpath(model, repo),
                     "seed": seed, "fractions": [float(f) for f in fractions], "quick": quick,
                     "train_images_animal5": train_images, "neurons_per_animal": n_neurons, "neurons_animal5": target_total,
                     "v1sysid": version,
                     "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto"), "blas_threads": 1,
                     "experiments": experiments, "target_neurons": target_neurons or None},
          "lurz": lurz, "ecker": ecker, "still_improving_at_epoch_cap": capped,
          "wall_seconds": wall, "trainings_reused_from_earlier_run": reused,
          "training_wall_seconds": {r: metrics(r)["wall_seconds"] for r in runs}}
with open(os.path.join(out, "transfer_results.json.partial"), "w") as fh:
    json.dump(result, fh, indent=2)
os.replace(os.path.join(out, "transfer_results.json.partial"), os.path.join(out, "transfer_results.json"))

fmt = lambda x: f"{x:.3f}"
md = [f"# Transfer experiments ({'quick' if quick else 'full'} size)", "",
      f"Data `{result['config']['data_config']}` (5 animals x {n_neurons} neurons"
      + (f", animal 5: {target_total}" if target_total != n_neurons else "") + f", {train_images} training images each), "
      f"model `{result['config']['model']}`, seed {seed}, wall time {wall} s"
      + (f" ({reused} of {len(runs)} trainings reused from an earlier run)." if reused else ".")]
if run_lurz:
    target = f" (its neurons {target_neurons}, {curve[0]['direct']['n_neurons']} of {target_total})" if target_neurons else ""
    md += ["", f"## Lurz et al. 2021: core of animals 1-4, transferred to animal 5{target}", "",
           "| fraction | training images | transfer test corr. | direct test corr. | transfer frac. oracle | direct frac. oracle | epochs (transfer / direct) |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in curve:
        t, d = c["transfer"], c["direct"]
        md.append(f"| {c['fraction']:g} | {c['train_images']} | {fmt(t['test_correlation'])} | {fmt(d['test_correlation'])} | "
                  f"{fmt(t['fraction_oracle'])} | {fmt(d['fraction_oracle'])} | {t['epochs']} / {d['epochs']} |")
    core_tc = [v["test_correlation"] for v in lurz["core"]["datasets"].values()]
    md += ["", f"Core model on animals 1-4: test correlation {', '.join(fmt(x) for x in core_tc)} ({lurz['core']['epochs']} epochs)."]
    if "claim" in lurz:
        c = lurz["claim"]
        md += ["", f"Claim (transfer at 40 % >= direct at 100 % - 0.01): transfer {fmt(c['transfer_at_0.4'])}, direct "
                   f"{fmt(c['direct_at_1.0'])}, difference {c['difference']:+.3f}: **{'holds' if c['holds'] else 'does not hold'}**."]
if run_ecker:
    half_own = ecker["half_core_on_its_own_neurons"]
    md += ["", f"## Ecker et al. 2019: core of neurons 0:{half} of animal 1, readouts for neurons {half}:{n_neurons}", "",
           "| model | neurons evaluated | test corr. | frac. oracle | FEVE |", "|---|---|---:|---:|---:|",
           f"| full model (all {n_neurons} neurons) | {half}:{n_neurons} | {fmt(full2['test_correlation'])} | {fmt(full2['fraction_oracle'])} | {fmt(full2['feve'])} |",
           f"| transfer (frozen core of 0:{half}) | {half}:{n_neurons} | {fmt(tr2['test_correlation'])} | {fmt(tr2['fraction_oracle'])} | {fmt(tr2['feve'])} |",
           f"| half core, its own neurons | 0:{half} | {fmt(half_own['test_correlation'])} | "
           f"{fmt(half_own['fraction_oracle'])} | {fmt(half_own['feve'])} |",
           "", f"Claim (|transfer - full| <= 0.02): difference {ecker['difference']:+.3f}: "
               f"**{'holds' if ecker['claim']['holds'] else 'does not hold'}**."]
md += ["", "Runs still improving when the epoch cap (train.max_epochs) ended them: "
       + (", ".join(f"`{r}`" for r in capped) if capped else "none") + ".", ""]
with open(os.path.join(out, "transfer_results.md"), "w") as fh:
    fh.write("\n".join(md))

if run_lurz:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.6))
    xs = [c["fraction"] for c in curve]
    ax.plot(xs, [c["transfer"]["test_correlation"] for c in curve], "o-", label="transfer (frozen core of animals 1-4)")
    ax.plot(xs, [c["direct"]["test_correlation"] for c in curve], "s-", label="direct training on animal 5")
    ax.axhline(curve[-1]["direct"]["test_correlation"], color="grey", ls=":", lw=1,
               label=f"direct training, fraction {curve[-1]['fraction']:g}")
    ax.set_xlabel("fraction of animal 5's training images")
    ax.set_ylabel("test correlation (animal 5)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "transfer_curve.png"), dpi=120)
print("\n".join(md))
PY
say "wrote $out/transfer_results.json, transfer_results.md$( ((run_lurz)) && echo ", transfer_curve.png")"
