#!/usr/bin/python3
"""Statistics and results of the pre-registered replication (docs/replication/protocol.md, sections 5-7; issue 18).

    /usr/bin/python3 analysis/replication.py MANIFEST.json --out docs/replication/results.json \
        [--tables docs/replication/tables.md] [--figures docs/replication] [--work replication/work] \
        [--v1sysid build/ci/v1sysid] [--resamples 10000] [--bootstrap-seed 18] [--arms main,deep0,absolute] \
        [--force]

MANIFEST (JSON; YAML with the same keys when PyYAML is installed) names the protocol's runs. Relative paths are
relative to the manifest's folder.

    {
      "simulator_seeds": [3101, 3102, 3103],
      "architectures": {"roteq": "roteq_4x8", "cnn": "cnn_32", "cnn_params": "cnn_8"},   (optional; these)
      "work": "work",                          (optional; the folder of the cached predictions, as --work)
      "development": [{"results": "dev_results.h5", "seed": 2019}],  (optional; only listed in `runs` and
                                               counted in the compute used)
      "seeds": {
        "3101": {
          "main":     {"data": "s3101/main.h5",
                       "sweeps": [{"results": "s3101/main_results.h5", "checkpoints": "s3101/main_ckpt"}]},
          "deep0":    {"data": ..., "sweeps": [...]},
          "absolute": {"data": ..., "sweeps": [...]},
          "transfer": {"data": "s3101/target.h5",
                       "runs": [{"name": "direct_0.4", "kind": "direct", "data_fraction": 0.4,
                                 "checkpoint": "s3101/direct_0.4/checkpoint.h5"}, ...]}
        }, ...
      }
    }

- main / deep0 / absolute: the dataset (`v1sysid simulate` output, with gt/ and item_info/source_photo) and the
  sweeps run on it: `results` (`v1sysid sweep --out`) and `checkpoints` (its `--save-checkpoints` folder, with
  trial_<id>.h5). A cell is the (architecture, data_fraction) of a results row; the protocol has one run per
  cell, so two finished rows of one cell are refused.
- transfer: `sweeps` as above, whose architectures are named by their kind (sweeps/replication/transfer_*.yaml),
  and/or `runs` of `v1sysid train`. A kind is `direct`, `transfer`, `random` (frozen random core), `disjoint`
  (frozen core of the disjoint animals) or `core` (a core training, listed with its compute but not evaluated);
  a run's `data` defaults to the arm's `data`; `metrics` defaults to metrics.json next to the checkpoint
  (status, iterations, wall_seconds).

Per run and neuron (section 5), on the test tier, from `v1sysid predict --tier test` of the run's checkpoint
(cached as WORK/<seed>/<arm>/<name>.pred.h5; predict runs only when that file is missing):
  Ecker  r(per-image prediction, repeat average) / mean over the neurons of gt/ceiling_correlation
  Lurz   r(prediction, response) over single trials / mean over the neurons of the leave-one-out oracle
         (each trial of an image shown >= 2 times against the mean of that image's other trials)
Pearson r is 0 where either side has SD (ddof 0) <= MIN_STD (src/metrics/metrics.hpp's kMinStd), as in
`v1sysid evaluate`; responses are not clipped.

Statistics (section 6): every statistic is a linear combination of per-run means M(arm, run) = sum over neurons
of the metric's numerator / sum over the same neurons of its denominator. Estimate: the mean over the seeds where
every run it uses exists. Hierarchical bootstrap: per resample, the seeds are drawn with replacement; each drawn
seed (each copy separately) draws its test photographs with replacement (every test image of a drawn photograph
enters with the photograph's multiplicity; photographs of item_info/source_photo, one draw per seed shared by its
arms) and, per arm, its neurons with replacement; correlations, oracles and the ceiling mean are recomputed on
the draw. All runs of a seed use the same draw. Interval: 2.5 and 97.5 percentiles. The inner draws of seed s
come from numpy's default_rng([bootstrap seed, 1, s]), the seed draws from default_rng([bootstrap seed, 0]), so
the numbers do not depend on the order of the manifest or on which other seeds are present. Speed: per-image sums
(prediction, response, squares, products) are precomputed per neuron, so a resample's correlations are one
matrix product of the image weights with them.

Iterations and cap_hit. A run's `steps` are all its training steps (the results file's trials/steps; in format
version 2 files, trials/iterations; metrics.json `steps`); its `iterations` are the schedule's iteration
counter at the end (trials/iterations from format version 3 on; checkpoint training/iterations; metrics.json
`iterations`), which the Ecker schedule rewinds
by patience x val_every at each learning-rate decay and which the cap train.max_iterations applies to, so steps
can exceed the cap in a run that early stopping ended. cap_hit is the trainer's own verdict, training status
`max_iterations` (checkpoint attribute training/status, metrics.json `status`); only when no status is stored,
iterations >= cap. The cap is train.max_iterations of the checkpoint's resolved config (every override applied),
or the results file's trials/hyperparameters/train.max_iterations when the sweep searched it; `cap_source` in
each run says which. A run without a checkpoint (failed, diverged) has cap_hit null.

Outputs (written under a temporary name, then renamed; an existing file is refused without --force):
results.json (simulator_seeds, arms_analysed, rules, results [{name, estimate, ci95, holds, description, metric,
n_seeds}], runs, compute), the markdown tables (--tables), fig3.png and transfer.png (--figures).
Exit status: 0; 2 bad arguments; 3 a file cannot be read or written; 4 a field is missing or malformed (the
message names the file and the field); 5 `v1sysid predict` failed.
"""
import argparse
import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import v1analysis  # noqa: E402  read_results, text, FINISHED_STATUSES
from shallow_bound import MIN_STD  # noqa: E402  kMinStd of src/metrics/metrics.hpp

try:
    import h5py
except ImportError:  # pragma: no cover - reported when a file is read
    h5py = None

DEFAULT_ARCHITECTURES = {"roteq": "roteq_4x8", "cnn": "cnn_32", "cnn_params": "cnn_8"}
SWEEP_ARMS = ("main", "deep0", "absolute")
ARMS = SWEEP_ARMS + ("transfer",)
MAIN_FRACTIONS = (0.125, 0.25, 1.0)
VARIANT_FRACTION = 0.25
TRANSFER_FRACTIONS = (0.1, 0.25, 0.4, 1.0)
NULL_FRACTION = 0.4
TRANSFER_KINDS = ("direct", "transfer", "random", "disjoint", "core")
METRICS = ("ecker", "lurz")
CHUNK = 200  # inner draws per block: [CHUNK, neurons] arrays stay in cache-sized pieces

# Section 1 of the protocol, verbatim.
RULES = {
    "table1": {"claim": "Ecker et al. 2019, Table 1: the rotation-equivariant core predicts better than a CNN of "
                        "the same size",
               "estimate": "roteq - CNN(32 maps) at 100 % of the training data, Ecker metric",
               "holds_if": "the 95 % interval lies entirely above 0"},
    "fig3": {"claim": "Ecker et al. 2019, Fig. 3: the advantage is larger when data are scarce",
             "estimate": "(mean of the gaps at 12.5 % and 25 %) - (gap at 100 %), Ecker metric",
             "holds_if": "estimate >= 0 and interval lower bound > -0.01"},
    "lurz_transfer": {"claim": "Lurz et al. 2021: a core trained on other animals, frozen, with a new readout on "
                               "40 % of the target's images, matches direct training on all of them",
                      "estimate": "transfer at 40 % - direct at 100 %, Lurz metric",
                      "holds_if": "interval lower bound > -0.01"},
    "equivariance_null": {"claim": "the advantage comes from the rotation prior, not from capacity or "
                                   "hyperparameters",
                          "estimate": "gap at 25 % on the absolute-coupling population - gap at 25 % on the main "
                                      "population, Ecker metric",
                          "holds_if": "interval upper bound < 0 (the advantage shrinks when the modulators are "
                                      "tied to image orientation)"},
    "dose_response": {"claim": "the advantage grows with the share of cells that need a deep core",
                      "estimate": "gap at 25 % with `deep_fraction` 0.3 - gap at 25 % with `deep_fraction` 0, "
                                  "Ecker metric",
                      "holds_if": "interval lower bound > 0"},
}
RULE_METRIC = {"table1": "ecker", "fig3": "ecker", "lurz_transfer": "lurz", "equivariance_null": "ecker",
               "dose_response": "ecker"}
HOLDS = {
    "table1": lambda est, lo, hi: lo > 0,
    "fig3": lambda est, lo, hi: est >= 0 and lo > -0.01,
    "lurz_transfer": lambda est, lo, hi: lo > -0.01,
    "equivariance_null": lambda est, lo, hi: hi < 0,
    "dose_response": lambda est, lo, hi: lo > 0,
}


class ReplicationError(Exception):
    """Input the analysis cannot use: the file, the field and what to do."""

    def __init__(self, path, field, why, fix, exit_code=4):
        self.exit_code = exit_code
        super().__init__(f"{path}: {field}: {why}; {fix}")


def fraction_label(f):
    return f"{f:g}"


# ---- manifest ---------------------------------------------------------------------------------------------

def read_manifest(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ReplicationError(path, "file", f"cannot be read ({e.strerror})", "pass the manifest's path",
                               exit_code=3) from e
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml
            manifest = yaml.safe_load(text)
        else:
            manifest = json.loads(text)
    except ImportError as e:
        raise ReplicationError(path, "file", "a YAML manifest needs PyYAML", "write the manifest as JSON",
                               exit_code=3) from e
    except Exception as e:
        raise ReplicationError(path, "file", f"cannot be parsed ({e})", "fix the syntax (see the docstring of "
                               "analysis/replication.py)") from e
    if not isinstance(manifest, dict):
        raise ReplicationError(path, "top level", "not an object", "write {\"simulator_seeds\": ..., \"seeds\": ...}")
    for key in ("simulator_seeds", "seeds"):
        if key not in manifest:
            raise ReplicationError(path, key, "missing", "see the docstring of analysis/replication.py")
    seeds = manifest["simulator_seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ReplicationError(path, "simulator_seeds", f"{seeds!r} is not a list of integers",
                               "list the test simulator seeds, e.g. [3101, 3102, 3103]")
    if not isinstance(manifest["seeds"], dict):
        raise ReplicationError(path, "seeds", "not an object", "map each seed (as a string) to its arms")
    extra = sorted(set(manifest["seeds"]) - {str(s) for s in seeds})
    if extra:
        raise ReplicationError(path, "seeds", f"{extra} are not in simulator_seeds", "add them or remove them")
    for s, arms in manifest["seeds"].items():
        if not isinstance(arms, dict) or set(arms) - set(ARMS):
            raise ReplicationError(path, f"seeds.{s}", f"arms {sorted(arms) if isinstance(arms, dict) else arms}",
                                   f"use the arms {', '.join(ARMS)}")
    architectures = dict(DEFAULT_ARCHITECTURES)
    architectures.update(manifest.get("architectures") or {})
    manifest["architectures"] = architectures
    manifest["_base"] = os.path.dirname(os.path.abspath(path))
    manifest["_path"] = path
    return manifest


def only_arms(manifest, arms):
    """Leaves the arms not in `arms` out of every seed of the manifest (--arms) and records the choice."""
    for s in manifest["seeds"]:
        manifest["seeds"][s] = {a: v for a, v in manifest["seeds"][s].items() if a in arms}
    manifest["arms_analysed"] = [a for a in ARMS if a in arms]


def resolve(manifest, p):
    return p if os.path.isabs(p) else os.path.join(manifest["_base"], p)


def need_key(entry, key, where, manifest_path):
    if not isinstance(entry, dict) or key not in entry:
        raise ReplicationError(manifest_path, f"{where}.{key}", "missing", "see the docstring of "
                               "analysis/replication.py")
    return entry[key]


# ---- datasets ---------------------------------------------------------------------------------------------

def _open_h5(path, what, fix):
    if h5py is None:
        raise ReplicationError(path, "h5py", "cannot import h5py", "run with Debian's /usr/bin/python3 "
                               "(apt-get install python3-h5py)", exit_code=3)
    if not os.path.isfile(path):
        raise ReplicationError(path, what, "no such file", fix, exit_code=3)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ReplicationError(path, what, f"cannot be opened as HDF5 ({e})", fix, exit_code=3) from e


class TestTier:
    """The test tier of one dataset, as per-image sums per neuron (responses centred per neuron first, so the
    sums of squares do not cancel)."""

    def __init__(self, path):
        self.path = path
        with _open_h5(path, "dataset", "pass a dataset written by `v1sysid simulate`") as f:
            def need(name, dims):
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    fix = {"item_info/source_photo": "simulate the data with a v1sysid that writes the source "
                                                     "photograph of each trial (the resampling unit of the "
                                                     "bootstrap)",
                           "gt/ceiling_correlation": "the Ecker metric needs a digital V1's analytic ceiling: "
                                                     "simulate the data with `v1sysid simulate`"}.get(
                        name, "pass a dataset written by `v1sysid simulate`")
                    raise ReplicationError(path, name, "missing", fix)
                value = f[name][()]
                if np.ndim(value) != dims:
                    raise ReplicationError(path, name, f"has {np.ndim(value)} dimensions, expected {dims}",
                                           "pass a dataset written by `v1sysid simulate`")
                return value

            tiers = np.array([v1analysis.text(v) for v in need("tiers", 1)])
            rows = np.flatnonzero(tiers == "test")
            if rows.size == 0:
                raise ReplicationError(path, "tiers", "no 'test' trials", "simulate the data with a test tier")
            ids_all = np.asarray(need("item_info/frame_image_id", 1), dtype=np.int64)
            photo_all = np.asarray(need("item_info/source_photo", 1))
            if photo_all.dtype.kind not in "iu":
                raise ReplicationError(path, "item_info/source_photo", f"type {photo_all.dtype}, expected integer",
                                       "simulate the data again")
            ceiling = np.asarray(need("gt/ceiling_correlation", 1), dtype=np.float64)
            if "responses" not in f or f["responses"].ndim != 2:
                raise ReplicationError(path, "responses", "missing or not [trials, neurons]",
                                       "pass a dataset written by `v1sysid simulate`")
            n_trials = f["responses"].shape[0]
            responses = np.asarray(f["responses"][rows[0]:rows[-1] + 1], dtype=np.float64)[rows - rows[0]]
        for name, value, length in (("tiers", tiers, n_trials), ("item_info/frame_image_id", ids_all, n_trials),
                                    ("item_info/source_photo", photo_all, n_trials),
                                    ("gt/ceiling_correlation", ceiling, responses.shape[1])):
            if len(value) != length:
                raise ReplicationError(path, name, f"{len(value)} rows, expected {length}",
                                       "the file is inconsistent: simulate it again")
        if not np.all(np.isfinite(responses)) or not np.all(np.isfinite(ceiling)):
            raise ReplicationError(path, "responses / gt/ceiling_correlation", "hold NaN or infinite values",
                                   "simulate the data again")
        if not ceiling.mean() > 0:
            raise ReplicationError(path, "gt/ceiling_correlation", f"mean {ceiling.mean():g}, not positive",
                                   "the Ecker metric divides by this mean: simulate the data again")
        self.trial_ids = ids_all[rows]
        self.n_neurons = responses.shape[1]
        self.ceiling = ceiling
        self.image_ids, self.trial_image = np.unique(self.trial_ids, return_inverse=True)
        n_images = len(self.image_ids)
        photos = photo_all[rows].astype(np.int64)
        self.image_photo = np.full(n_images, -1, dtype=np.int64)
        self.image_photo[self.trial_image] = photos
        if np.any(self.image_photo[self.trial_image] != photos):
            raise ReplicationError(path, "item_info/source_photo", "repeats of one image name different photographs",
                                   "simulate the data again")
        self.reps = np.bincount(self.trial_image, minlength=n_images).astype(np.float64)
        self.indicator = np.zeros((n_images, len(self.trial_ids)))
        self.indicator[self.trial_image, np.arange(len(self.trial_ids))] = 1.0
        y = responses - responses.mean(axis=0)
        self.y = y
        sy = self._per_image(y)
        syy = self._per_image(y * y)
        self.rbar = sy / self.reps[:, None]
        # Single trials (Lurz): sums over each image's trials.
        self.ty, self.tyy = sy, syy
        # Leave-one-out oracle on images with >= 2 repeats: loo_t = (S - y_t) / (R - 1), so per image
        # sum loo = S, sum y loo = (S^2 - Syy) / (R - 1), sum loo^2 = ((R - 2) S^2 + Syy) / (R - 1)^2.
        rep = self.reps >= 2
        if not rep.any():
            raise ReplicationError(path, "item_info/frame_image_id", "no test image is shown more than once",
                                   "the oracle needs repeated test images: simulate with test_repeats >= 2")
        r = np.where(rep, self.reps, 2.0)[:, None]
        keep = rep[:, None]
        self.o_n = np.where(rep, self.reps, 0.0)
        self.o_sx = np.where(keep, sy, 0.0)
        self.o_syy = np.where(keep, syy, 0.0)
        self.o_sxy = np.where(keep, (sy * sy - syy) / (r - 1), 0.0)
        self.o_sxx = np.where(keep, ((r - 2) * sy * sy + syy) / (r - 1) ** 2, 0.0)

    def _per_image(self, values):
        """Sum over each image's trials: [trials, N] -> [images, N] (an indicator matrix product; np.add.at is
        ten times slower)."""
        return self.indicator @ values

    def run_sums(self, predictions, pred_path):
        """Per-image sums of one run's test predictions [trials, N] (file order of the tier)."""
        if predictions.shape != (len(self.trial_ids), self.n_neurons):
            raise ReplicationError(pred_path, "predictions", f"shape {predictions.shape}, expected "
                                   f"({len(self.trial_ids)}, {self.n_neurons}) (test trials, neurons of "
                                   f"{self.path})", "delete it so that it is predicted again with this dataset")
        p = predictions - predictions.mean(axis=0)
        sp = self._per_image(p)
        pbar = sp / self.reps[:, None]
        return {"pbar": pbar, "pbar2": pbar * pbar, "pbar_rbar": pbar * self.rbar,
                "tp": sp, "tpp": self._per_image(p * p), "tpy": self._per_image(p * self.y)}


# ---- correlations from weighted sums --------------------------------------------------------------------------

def pearson_from_sums(n, sx, sy, sxx, syy, sxy):
    """Pearson r per column from weighted sums (n broadcastable to the sums); 0 where either SD <= MIN_STD or
    there are no observations (metrics.cpp's pearson_from_sums)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vx = sxx / n - mx * mx
        vy = syy / n - my * my
        r = (sxy / n - mx * my) / np.sqrt(vx * vy)
    bad = ~(n > 0) | ~(vx > MIN_STD ** 2) | ~(vy > MIN_STD ** 2)
    return np.where(bad, 0.0, r)


def _y_side(n, sy, syy):
    """(mean, variance, usable) of the shared side of pearson_shared: [k, N] each."""
    with np.errstate(invalid="ignore", divide="ignore"):
        my = sy / n
        vy = syy / n - my * my
    return my, vy, vy > MIN_STD ** 2


def pearson_shared(n, sx, sxx, sxy, y_side):
    """pearson_from_sums for several runs [k, runs, N] against one response side [k, N], in place (sx, sxx and
    sxy are overwritten): the bootstrap's inner loop."""
    my, vy, ok_y = y_side
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = 1.0 / n
        sx *= inv                       # mean of x
        sxx *= inv
        sxx -= sx * sx                  # variance of x
        sxy *= inv
        sxy -= sx * my[:, None]         # covariance
        ok = (sxx > MIN_STD ** 2) & ok_y[:, None]
        sxx *= vy[:, None]
        np.sqrt(sxx, out=sxx)
        sxy /= sxx
    sxy[~ok] = 0.0
    return sxy


# ---- runs -------------------------------------------------------------------------------------------------

def _config_max_iterations(config_text):
    """train.max_iterations of a checkpoint's resolved YAML config, or None."""
    try:
        import yaml
        cfg = yaml.safe_load(config_text) or {}
        value = (cfg.get("train") or {}).get("max_iterations")
        return int(value) if value is not None else None
    except ImportError:  # the resolved config is block YAML written by yaml-cpp: find the key in the train block
        block = re.search(r"^train:\s*\n((?:[ \t]+.*\n?)*)", config_text, re.M)
        value = re.search(r"^\s+max_iterations:\s*(\d+)", block.group(1), re.M) if block else None
        return int(value.group(1)) if value else None


def _checkpoint_training(path):
    """What a checkpoint says about its training: cap (train.max_iterations of its config), trial_id, the
    trainer's status, iterations (schedule counter) and steps; None for what it does not store."""
    out = dict(cap=None, trial_id=None, status=None, iterations=None, steps=None)
    with _open_h5(path, "checkpoint", "pass a checkpoint written by v1sysid") as f:
        config = f.attrs.get("config")
        out["trial_id"] = f.attrs.get("trial_id")
        if "training" in f:
            attrs = f["training"].attrs
            out["status"] = v1analysis.text(attrs["status"]) if "status" in attrs else None
            for name in ("iterations", "steps"):
                out[name] = int(attrs[name]) if name in attrs else None
    if config is not None:
        out["cap"] = _config_max_iterations(v1analysis.text(config))
    return out


def _finish_cap(run, cap, source, training_status):
    run["cap"] = cap
    run["cap_source"] = source
    if run["status"] != "ok":
        run["cap_hit"] = None
    elif training_status in ("finished", "max_iterations"):
        run["cap_hit"] = training_status == "max_iterations"
    elif cap is not None and run["iterations"] is not None:
        run["cap_hit"] = bool(run["iterations"] >= cap)
    else:
        run["cap_hit"] = None


def sweep_runs(manifest, seed, arm, entry, where):
    """Every row of the arm's sweeps, as run records; the usable ones carry their checkpoint."""
    runs = []
    data = resolve(manifest, need_key(entry, "data", where, manifest["_path"]))
    for k, sweep in enumerate(need_key(entry, "sweeps", where, manifest["_path"])):
        results = resolve(manifest, need_key(sweep, "results", f"{where}.sweeps[{k}]", manifest["_path"]))
        folder = sweep.get("checkpoints")
        folder = resolve(manifest, folder) if folder else None
        runs += _results_rows(results, folder, seed, arm, data)
    seen = {}
    for run in runs:
        if run["status"] != "ok":
            continue
        key = (run["architecture"], run["data_fraction"])
        if key in seen:
            raise ReplicationError(run["source"], "trials/architecture, trials/data_fraction",
                                   f"two finished runs of {key[0]} at {fraction_label(key[1])} (also "
                                   f"{seen[key]['source']})", "the protocol has one run per cell: list only "
                                   "the test-phase sweeps of this arm in the manifest")
        seen[key] = run
    return runs


def _results_rows(path, folder, seed, arm, data):
    if not os.path.isfile(path):
        raise ReplicationError(path, "results file", "no such file", "run the sweep (`v1sysid sweep ... --out "
                               "THIS`) or fix the manifest", exit_code=3)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = v1analysis.read_results(path)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except OSError as e:
        raise ReplicationError(path, "results file", f"cannot be read ({e})", "pass a results file written by "
                               "`v1sysid sweep`", exit_code=3) from e
    except KeyError as e:
        raise ReplicationError(path, f"trials/{e.args[0] if e.args else ''}", "missing",
                               "pass a results file written by `v1sysid sweep`") from e
    for name in ("trial_id", "architecture", "data_fraction", "status", "iterations", "wall_seconds"):
        if name not in t:
            raise ReplicationError(path, f"trials/{name}", "missing", "pass a results file written by "
                                   "`v1sysid sweep`")
    caps = t["hyperparameters"].get("train.max_iterations")
    runs = []
    for i in range(len(t["status"])):
        status = str(t["status"][i])
        trial = int(t["trial_id"][i])
        run = {"seed": seed, "arm": arm, "name": f"{t['architecture'][i]}_{fraction_label(t['data_fraction'][i])}",
               "architecture": str(t["architecture"][i]), "kind": "sweep",
               "data_fraction": float(t["data_fraction"][i]), "status": status,
               "message": str(t["message"][i]) if "message" in t else "",
               "steps": int(t["steps" if "steps" in t else "iterations"][i]) if status == "ok" else None,
               "iterations": int(t["iterations"][i]) if status == "ok" and "steps" in t else None,
               "wall_seconds": float(t["wall_seconds"][i]) if status in v1analysis.FINISHED_STATUSES else None,
               "source": f"{path} trial {trial}", "data": data, "checkpoint": None}
        cap, cap_source, training_status = None, None, None
        if caps is not None and np.isfinite(caps[i]):
            cap, cap_source = int(caps[i]), "results trials/hyperparameters/train.max_iterations"
        if status == "ok":
            if folder is None:
                run["status"] = "no_checkpoint"
                run["message"] = "the manifest names no checkpoint folder (sweep --save-checkpoints)"
            else:
                ckpt = os.path.join(folder, f"trial_{trial}.h5")
                if not os.path.isfile(ckpt):
                    run["status"] = "no_checkpoint"
                    run["message"] = f"{ckpt} is missing (was the sweep run with --save-checkpoints {folder}?)"
                else:
                    info = _checkpoint_training(ckpt)
                    if info["trial_id"] is not None and int(info["trial_id"]) != trial:
                        raise ReplicationError(ckpt, "trial_id", f"{int(info['trial_id'])}, but it is the file "
                                               f"of trial {trial} of {path}", "pass the checkpoint folder of this "
                                               "sweep (--save-checkpoints)")
                    run["checkpoint"] = ckpt
                    run["iterations"], training_status = info["iterations"], info["status"]
                    if cap is None and info["cap"] is not None:
                        cap, cap_source = info["cap"], "checkpoint config train.max_iterations"
        _finish_cap(run, cap, cap_source, training_status)
        runs.append(run)
    return runs


def transfer_runs(manifest, seed, entry, where):
    runs = []
    default_data = entry.get("data")
    names = set()
    if "runs" not in entry and "sweeps" not in entry:
        need_key(entry, "runs", where, manifest["_path"])  # the error names the field
    # Transfer sweeps (sweeps/replication/transfer_*.yaml): each row's architecture is its kind; the core sweeps'
    # rows (kind core) are listed with their compute only.
    for k, sweep in enumerate(entry.get("sweeps", [])):
        at = f"{where}.sweeps[{k}]"
        results = resolve(manifest, need_key(sweep, "results", at, manifest["_path"]))
        folder = sweep.get("checkpoints")
        data = resolve(manifest, need_key(entry, "data", where, manifest["_path"]))
        for run in _results_rows(results, resolve(manifest, folder) if folder else None, seed, "transfer", data):
            kind = run["architecture"]
            if kind not in TRANSFER_KINDS:
                raise ReplicationError(results, "trials/architecture", f"{kind!r}", "name the architectures of a "
                                       f"transfer sweep by their kind, one of {TRANSFER_KINDS}")
            if kind == "core":
                run["name"] = os.path.splitext(os.path.basename(results))[0]
            run.update(kind=kind, architecture="cnn_32")
            if run["name"] in names:
                raise ReplicationError(results, "trials/architecture, trials/data_fraction", f"{run['name']!r} "
                                       "twice in the transfer arm", "list each transfer sweep once")
            names.add(run["name"])
            runs.append(run)
    for k, item in enumerate(entry.get("runs", [])):
        at = f"{where}.runs[{k}]"
        name = str(need_key(item, "name", at, manifest["_path"]))
        kind = need_key(item, "kind", at, manifest["_path"])
        if kind not in TRANSFER_KINDS:
            raise ReplicationError(manifest["_path"], f"{at}.kind", f"{kind!r}", f"use one of {TRANSFER_KINDS}")
        if name in names:
            raise ReplicationError(manifest["_path"], f"{at}.name", f"{name!r} is used twice", "name runs uniquely")
        names.add(name)
        fraction = item.get("data_fraction")
        if kind != "core" and not isinstance(fraction, (int, float)):
            raise ReplicationError(manifest["_path"], f"{at}.data_fraction", f"{fraction!r}", "give the run's "
                                   "fraction of the target's training images, e.g. 0.4")
        ckpt = resolve(manifest, need_key(item, "checkpoint", at, manifest["_path"]))
        data = item.get("data", default_data)
        if kind != "core" and data is None:
            raise ReplicationError(manifest["_path"], f"{at}.data", "missing (and no transfer.data)",
                                   "name the target animal's dataset")
        metrics_path = resolve(manifest, item["metrics"]) if "metrics" in item else os.path.join(
            os.path.dirname(ckpt), "metrics.json")
        run = {"seed": seed, "arm": "transfer", "name": name, "architecture": item.get("architecture", "cnn_32"),
               "kind": kind, "data_fraction": float(fraction) if fraction is not None else None,
               "status": "ok", "message": "", "iterations": None, "steps": None, "wall_seconds": None,
               "source": metrics_path, "data": resolve(manifest, data) if data else None, "checkpoint": ckpt}
        try:
            with open(metrics_path) as f:
                metrics = json.load(f)
        except OSError:
            metrics = None
            run["status"], run["message"] = "missing", f"{metrics_path} is missing (run not finished?)"
        except ValueError as e:
            raise ReplicationError(metrics_path, "file", f"not JSON ({e})", "pass the metrics.json written by "
                                   "`v1sysid train`") from e
        if metrics is not None:
            status = metrics.get("status")
            if status == "diverged":
                run["status"], run["message"] = "diverged", str(metrics.get("message", ""))
            elif status not in ("finished", "max_iterations"):
                raise ReplicationError(metrics_path, "status", f"{status!r}", "pass the metrics.json written by "
                                       "`v1sysid train`")
            for field, cast in (("iterations", int), ("wall_seconds", float)):
                if not isinstance(metrics.get(field), (int, float)):
                    raise ReplicationError(metrics_path, field, "missing or not a number", "pass the metrics.json "
                                           "written by `v1sysid train`")
                run[field] = cast(metrics[field])
            run["steps"] = int(metrics["steps"]) if isinstance(metrics.get("steps"), (int, float)) else None
        if run["status"] == "ok" and not os.path.isfile(ckpt):
            run["status"], run["message"] = "no_checkpoint", f"{ckpt} is missing"
        cap = _checkpoint_training(ckpt)["cap"] if run["status"] == "ok" else None
        _finish_cap(run, cap, "checkpoint config train.max_iterations" if cap is not None else None,
                    metrics.get("status") if metrics else None)
        runs.append(run)
    return runs


def run_label(run, architectures):
    """The run's place in the protocol: (arm, label, fraction) with label a role of `architectures` (roteq,
    cnn, cnn_params) for the sweep arms or the kind for the transfer arm; None when no statistic uses it."""
    if run["arm"] == "transfer":
        return None if run["kind"] == "core" else ("transfer", run["kind"], run["data_fraction"])
    roles = {arch: role for role, arch in architectures.items()}
    role = roles.get(run["architecture"])
    return None if role is None else (run["arm"], role, run["data_fraction"])


# ---- predictions ------------------------------------------------------------------------------------------

def find_v1sysid(given):
    if given:
        return given
    if os.environ.get("V1SYSID_EXE"):
        return os.environ["V1SYSID_EXE"]
    on_path = shutil.which("v1sysid")
    if on_path:
        return on_path
    built = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "ci", "v1sysid")
    return built if os.path.isfile(built) else None


def predictions_for(run, work, exe):
    """The run's test-tier predictions [trials, N], from the cache or `v1sysid predict`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run["name"])
    out = os.path.join(work, str(run["seed"]), run["arm"], safe + ".pred.h5")
    checkpoint = os.path.abspath(run["checkpoint"])
    if not os.path.isfile(out):
        if exe is None:
            raise ReplicationError(out, "predictions", "missing, and no v1sysid executable was found",
                                   "pass --v1sysid PATH (or set V1SYSID_EXE)", exit_code=5)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cmd = [exe, "predict", "--checkpoint", checkpoint, "--data", os.path.abspath(run["data"]),
               "--tier", "test", "--out", out]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise ReplicationError(exe, "v1sysid", f"cannot be run ({e.strerror})", "pass --v1sysid PATH",
                                   exit_code=5) from e
        if done.returncode != 0:
            raise ReplicationError(checkpoint, "predict", f"`{' '.join(cmd)}` exited {done.returncode}: "
                                   f"{done.stderr.strip()[-500:]}", "fix the run or remove it from the manifest",
                                   exit_code=5)
    with _open_h5(out, "predictions", "delete it so that it is predicted again") as f:
        stored = v1analysis.text(f.attrs.get("checkpoint", ""))
        if stored and os.path.abspath(stored) != checkpoint:
            raise ReplicationError(out, "checkpoint (attribute)", f"predicted from {stored}, not {checkpoint}",
                                   "delete the cached file (or use another --work folder)")
        if v1analysis.text(f.attrs.get("tier", "test")) != "test":
            raise ReplicationError(out, "tier (attribute)", "not the test tier", "delete the cached file")
        if "neuron_indices" in f:
            raise ReplicationError(out, "neuron_indices", "a model of a neuron subset", "the protocol's models "
                                   "predict every neuron: train on all neurons")
        for name in ("predictions", "image_ids"):
            if name not in f:
                raise ReplicationError(out, name, "missing", "delete the cached file so that it is predicted again")
        return np.asarray(f["predictions"][()], dtype=np.float64), np.asarray(f["image_ids"][()], dtype=np.int64)


# ---- the statistics -----------------------------------------------------------------------------------------

def statistics(architectures):
    """Every reported statistic: (name, metric, terms [(coefficient, (arm, label, fraction))], description,
    rule or None). The five rules come with both metrics; the verdict uses the rule's metric."""
    def gap(arm, f, other="cnn"):
        return [(1.0, (arm, "roteq", f)), (-1.0, (arm, other, f))]

    def scaled(c, terms):
        return [(c * a, k) for a, k in terms]

    roteq, cnn, cnn_params = architectures["roteq"], architectures["cnn"], architectures["cnn_params"]
    out = []
    definitions = {
        "table1": gap("main", 1.0),
        "fig3": scaled(0.5, gap("main", 0.125)) + scaled(0.5, gap("main", 0.25)) + scaled(-1, gap("main", 1.0)),
        "lurz_transfer": [(1.0, ("transfer", "transfer", NULL_FRACTION)), (-1.0, ("transfer", "direct", 1.0))],
        "equivariance_null": gap("absolute", VARIANT_FRACTION) + scaled(-1, gap("main", VARIANT_FRACTION)),
        "dose_response": gap("main", VARIANT_FRACTION) + scaled(-1, gap("deep0", VARIANT_FRACTION)),
    }
    for name, terms in definitions.items():
        verdict = RULE_METRIC[name]
        for metric in (verdict,) + tuple(m for m in METRICS if m != verdict):
            out.append((name if metric == verdict else f"{name}.{metric}", metric, terms,
                        RULES[name]["estimate"].rsplit(",", 1)[0] + f" ({metric} metric)",
                        name if metric == verdict else None))
    for metric in METRICS:
        for f in MAIN_FRACTIONS:
            out.append((f"gap.main.{fraction_label(f)}.{metric}", metric, gap("main", f),
                        f"{roteq} - {cnn} at {fraction_label(f)} (main population)", None))
            out.append((f"params_gap.main.{fraction_label(f)}.{metric}", metric, gap("main", f, "cnn_params"),
                        f"{roteq} - {cnn_params} (same number of core parameters) at {fraction_label(f)}", None))
        for arm in ("deep0", "absolute"):
            out.append((f"gap.{arm}.{fraction_label(VARIANT_FRACTION)}.{metric}", metric,
                        gap(arm, VARIANT_FRACTION), f"{roteq} - {cnn} at 0.25 ({arm} population)", None))
        for null in ("random", "disjoint"):
            out.append((f"transfer_minus_{null}.{metric}", metric,
                        [(1.0, ("transfer", "transfer", NULL_FRACTION)), (-1.0, ("transfer", null, NULL_FRACTION))],
                        f"transfer - {null} frozen core at 40 %", None))
        for role in ("roteq", "cnn", "cnn_params"):
            for f in MAIN_FRACTIONS:
                out.append((f"level.main.{architectures[role]}.{fraction_label(f)}.{metric}", metric,
                            [(1.0, ("main", role, f))], f"{architectures[role]} at {fraction_label(f)}: "
                            f"fraction of the {'ceiling' if metric == 'ecker' else 'oracle'}", None))
        for kind in ("direct", "transfer"):
            for f in TRANSFER_FRACTIONS:
                out.append((f"level.transfer.{kind}.{fraction_label(f)}.{metric}", metric,
                            [(1.0, ("transfer", kind, f))], f"{kind} at {fraction_label(f)}", None))
        for kind in ("random", "disjoint"):
            out.append((f"level.transfer.{kind}.{fraction_label(NULL_FRACTION)}.{metric}", metric,
                        [(1.0, ("transfer", kind, NULL_FRACTION))], f"{kind} frozen core at 40 %", None))
    return out


class SeedData:
    """One test seed: its arms' test tiers and the per-image sums of every usable run."""

    def __init__(self, seed):
        self.seed = seed
        self.tiers = {}      # arm -> TestTier (the transfer arm: the target's dataset)
        self.runs = {}       # (arm, label, fraction) -> per-image sums
        self.photos = None   # sorted union of the arms' test photographs

    def finish(self):
        self.photos = np.unique(np.concatenate([t.image_photo for t in self.tiers.values()]))
        for t in self.tiers.values():
            t.photo_column = np.searchsorted(self.photos, t.image_photo)


def _stack(runs):
    """(keys, [images, runs * 6 * neurons]): every run's per-image sums side by side, so that a block of draws
    needs one matrix product."""
    keys = list(runs)
    return keys, np.concatenate([np.concatenate([runs[k][s] for s in ("pbar", "pbar2", "pbar_rbar", "tp", "tpp",
                                                                      "tpy")], axis=1) for k in keys], axis=1)


def _arm_means(tier, stacked_runs, weights, counts):
    """Per-run means of both metrics for a block of draws: weights [k, images] (multiplicity of each test
    image), counts [k, neurons] (multiplicity of each neuron) -> {key: {metric: [k]}}."""
    keys, stacked = stacked_runs
    if not keys:
        return {}
    n_img = weights.sum(axis=1)[:, None, None]
    n_trials = (weights @ tier.reps)[:, None, None]
    ecker_y = _y_side(n_img[:, 0], weights @ tier.rbar, weights @ (tier.rbar * tier.rbar))
    lurz_y = _y_side(n_trials[:, 0], weights @ tier.ty, weights @ tier.tyy)
    oracle = pearson_from_sums((weights @ tier.o_n)[:, None], weights @ tier.o_sx, weights @ tier.o_sx,
                               weights @ tier.o_sxx, weights @ tier.o_syy, weights @ tier.o_sxy)
    denominators = {"ecker": counts @ tier.ceiling, "lurz": np.einsum("kn,kn->k", counts, oracle)}
    n = tier.n_neurons
    sums = (weights @ stacked).reshape(len(weights), len(keys), 6, n)
    ecker = pearson_shared(n_img, sums[:, :, 0], sums[:, :, 1], sums[:, :, 2], ecker_y)
    lurz = pearson_shared(n_trials, sums[:, :, 3], sums[:, :, 4], sums[:, :, 5], lurz_y)
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.einsum("kn,krn->kr", counts, ecker) / denominators["ecker"][:, None]
        lz = np.einsum("kn,krn->kr", counts, lurz) / np.where(denominators["lurz"] > 0, denominators["lurz"],
                                                                np.nan)[:, None]
    for j, key in enumerate(keys):
        out[key] = {"ecker": e[:, j], "lurz": lz[:, j]}
    return out


def per_neuron(tier, sums):
    """Point values per neuron (all images, all neurons), for checks: (Ecker r, single-trial r, oracle)."""
    w = np.ones((1, len(tier.image_ids)))
    oracle = pearson_from_sums((w @ tier.o_n)[:, None], w @ tier.o_sx, w @ tier.o_sx, w @ tier.o_sxx,
                               w @ tier.o_syy, w @ tier.o_sxy)[0]
    e = pearson_from_sums(w.sum(), w @ sums["pbar"], w @ tier.rbar, w @ sums["pbar2"],
                          w @ (tier.rbar * tier.rbar), w @ sums["pbar_rbar"])[0]
    st = pearson_from_sums(w @ tier.reps, w @ sums["tp"], w @ tier.ty, w @ sums["tpp"], w @ tier.tyy,
                           w @ sums["tpy"])[0]
    return e, st, oracle


def seed_means(sd, n_draws, bootstrap_seed, point=False, chunk=CHUNK):
    """{key: {metric: [n_draws]}} of one seed: the point values (point=True: one 'draw' of every image and
    neuron once) or n_draws inner bootstrap draws."""
    arms = [a for a in ARMS if a in sd.tiers]
    by_arm = {a: _stack({k: v for k, v in sd.runs.items() if k[0] == a}) for a in arms}
    out = {k: {m: np.empty(n_draws) for m in METRICS} for k in sd.runs}
    if point:
        for a in arms:
            t = sd.tiers[a]
            res = _arm_means(t, by_arm[a], np.ones((1, len(t.image_ids))), np.ones((1, t.n_neurons)))
            for k, v in res.items():
                for m in METRICS:
                    out[k][m][:] = v[m]
        return out
    rng = np.random.default_rng([bootstrap_seed, 1, sd.seed])
    n_photos = len(sd.photos)
    for start in range(0, n_draws, chunk):
        k = min(chunk, n_draws - start)
        photo_counts = rng.multinomial(n_photos, np.full(n_photos, 1.0 / n_photos), size=k).astype(np.float64)
        for a in arms:
            t = sd.tiers[a]
            counts = rng.multinomial(t.n_neurons, np.full(t.n_neurons, 1.0 / t.n_neurons), size=k)
            res = _arm_means(t, by_arm[a], photo_counts[:, t.photo_column], counts.astype(np.float64))
            for key, v in res.items():
                for m in METRICS:
                    out[key][m][start:start + k] = v[m]
    return out


def bootstrap(seeds, stats, n_resamples, bootstrap_seed, progress=None):
    """[{name, metric, estimate, ci95, n_seeds, seeds, ...}] for every statistic (see the module docstring)."""
    n_seeds = len(seeds)
    point = {sd.seed: seed_means(sd, 1, bootstrap_seed, point=True) for sd in seeds}
    # Inner draws: slot j of resample b of seed s is draw b * n_seeds + j of that seed's generator.
    draws = {}
    for sd in seeds:
        if progress:
            progress(f"seed {sd.seed}: {n_resamples * n_seeds} inner draws")
        draws[sd.seed] = seed_means(sd, n_resamples * n_seeds, bootstrap_seed)
    uniform = np.random.default_rng([bootstrap_seed, 0]).random((n_resamples, n_seeds))
    results = []
    for name, metric, terms, description, rule in stats:
        keys = [k for _, k in terms]
        usable = [sd for sd in seeds if all(k in sd.runs for k in keys)]
        entry = {"name": name, "metric": metric, "description": description, "n_seeds": len(usable),
                 "seeds": [sd.seed for sd in usable], "rule": rule}
        if not usable:
            entry.update(estimate=None, ci95=[None, None], holds=None)
            results.append(entry)
            continue
        per_seed_point = [sum(c * point[sd.seed][k][metric][0] for c, k in terms) for sd in usable]
        estimate = float(np.mean(per_seed_point))
        pick = np.minimum((uniform[:, :len(usable)] * len(usable)).astype(np.int64), len(usable) - 1)
        slot = np.arange(n_resamples)[:, None] * n_seeds + np.arange(len(usable))[None, :]
        values = np.zeros((n_resamples, len(usable)))
        for i, sd in enumerate(usable):
            combo = sum(c * draws[sd.seed][k][metric] for c, k in terms)  # [n_resamples * n_seeds]
            mask = pick == i
            values[mask] = combo[slot[mask]]
        resampled = values.mean(axis=1)
        undefined = int(np.count_nonzero(~np.isfinite(resampled)))
        lo, hi = np.nanpercentile(resampled, [2.5, 97.5]) if undefined < n_resamples else (np.nan, np.nan)
        entry.update(estimate=estimate, ci95=[float(lo), float(hi)], per_seed=[float(v) for v in per_seed_point])
        if undefined:
            entry["undefined_resamples"] = undefined
        entry["holds"] = bool(HOLDS[rule](estimate, lo, hi)) if rule else None
        results.append(entry)
    return results


# ---- loading --------------------------------------------------------------------------------------------------

def load(manifest, work, exe, progress=None):
    """(SeedData of every seed with at least one evaluated run, every run record)."""
    architectures = manifest["architectures"]
    all_runs, seeds = [], []
    for k, dev in enumerate(manifest.get("development") or []):
        path = resolve(manifest, need_key(dev, "results", f"development[{k}]", manifest["_path"]))
        for run in _results_rows(path, None, dev.get("seed"), "development", None):
            if run["status"] == "no_checkpoint":  # development runs are listed for their compute only
                run["status"], run["message"] = "ok", ""
            all_runs.append(run)
    for s in manifest["simulator_seeds"]:
        arms = manifest["seeds"].get(str(s), {})
        sd = SeedData(s)
        for arm in ARMS:
            if arm not in arms:
                continue
            where = f"seeds.{s}.{arm}"
            runs = (transfer_runs(manifest, s, arms[arm], where) if arm == "transfer"
                    else sweep_runs(manifest, s, arm, arms[arm], where))
            all_runs += runs
            for run in runs:
                key = run_label(run, architectures)
                if run["status"] != "ok" or key is None:
                    continue
                if key in sd.runs:
                    raise ReplicationError(manifest["_path"], where, f"two runs of {key[1]} at "
                                           f"{fraction_label(key[2])}", "list one run per cell")
                if arm not in sd.tiers:
                    if progress:
                        progress(f"reading {run['data']}")
                    sd.tiers[arm] = TestTier(run["data"])
                tier = sd.tiers[arm]
                if os.path.abspath(run["data"]) != os.path.abspath(tier.path):
                    raise ReplicationError(manifest["_path"], f"{where} run {run['name']}", f"data {run['data']} "
                                           f"differs from the arm's {tier.path}", "the runs of one arm are "
                                           "compared neuron by neuron: evaluate them on the same dataset")
                if progress:
                    progress(f"predictions of seed {s} {arm} {run['name']}")
                predictions, image_ids = predictions_for(run, work, exe)
                if not np.array_equal(image_ids, tier.trial_ids):
                    raise ReplicationError(run["checkpoint"], "image_ids of its test predictions",
                                           f"differ from item_info/frame_image_id of the test tier of {tier.path}",
                                           "delete the cached predictions so that they are made again from "
                                           "this dataset")
                sd.runs[key] = tier.run_sums(predictions, run["checkpoint"])
                run["evaluated"] = True
        if sd.tiers:
            sd.finish()
            seeds.append(sd)
    return seeds, all_runs


# ---- outputs ----------------------------------------------------------------------------------------------

def _fmt(x, digits=3):
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _holds(h):
    return "–" if h is None else ("**yes**" if h else "**no**")


def markdown(doc):
    lines = [f"Simulator seeds: {', '.join(map(str, doc['simulator_seeds']))}. Bootstrap: "
             f"{doc['bootstrap']['resamples']} resamples, seed {doc['bootstrap']['seed']} (seeds, then neurons, "
             "then test photographs); 95 % percentile intervals." + (
                 "" if doc["arms_analysed"] == list(ARMS) else
                 f" Arms analysed: {', '.join(doc['arms_analysed'])} (the others left out with --arms)."), "",
             "| rule | metric | estimate | 95 % interval | holds | seeds | holds if |", "|---|---|---|---|---|---|---|"]
    rules = [r for r in doc["results"] if r["name"].split(".")[0] in RULES and not r["name"].startswith("gap")]
    for r in rules:
        base = r["name"].split(".")[0]
        lines.append(f"| `{r['name']}` | {r['metric']} | {_fmt(r['estimate'])} | [{_fmt(r['ci95'][0])}, "
                     f"{_fmt(r['ci95'][1])}] | {_holds(r['holds'])} | {r['n_seeds']} | "
                     f"{RULES[base]['holds_if'] if r['rule'] else 'no verdict (other metric)'} |")
    lines += ["", "Secondary statistics (no verdict):", "", "| statistic | metric | estimate | 95 % interval | seeds |",
              "|---|---|---|---|---|"]
    for r in doc["results"]:
        if r in rules:
            continue
        lines.append(f"| {r['description']} (`{r['name']}`) | {r['metric']} | {_fmt(r['estimate'])} | "
                     f"[{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}] | {r['n_seeds']} |")
    c = doc["compute"]
    lines += ["", f"Compute used: {c['wall_seconds']:.0f} s of run wall time ({c['wall_seconds'] / 3600:.2f} h, "
              f"one rank each) over {c['runs_with_time']} runs; {c['cap_hits']} runs ended by the iteration cap, "
              f"{c['failed']} runs failed or missing.", "",
              "| seed | arm | run | status | steps | iterations | cap | cap hit | wall s | note |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        lines.append(f"| {r['seed'] if r['seed'] is not None else '–'} | {r['arm']} | {r['name']} | {r['status']} | "
                     f"{r['steps'] if r['steps'] is not None else '–'} | "
                     f"{r['iterations'] if r['iterations'] is not None else '–'} | "
                     f"{r['cap'] if r['cap'] is not None else '–'} | "
                     f"{'**yes**' if r['cap_hit'] else ('no' if r['cap_hit'] is False else '–')} | "
                     f"{_fmt(r['wall_seconds'], 0)} | {r['message'][:80].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def figures(doc, folder, write_atomically):
    from report import plt  # report.py starts matplotlib (Agg) with its guard for a font cache it cannot write
    by_name = {r["name"]: r for r in doc["results"]}
    arch = doc["architectures"]
    written = []

    def plot(ax, names, label, colour, marker="o", line="-"):
        """Estimates joined by a line and their percentile intervals as vertical bars (drawn from the bounds, not
        as errors around the estimate: a percentile interval of a correlation need not contain the estimate)."""
        points = [(x, by_name[n]) for x, n in names if n in by_name and by_name[n]["estimate"] is not None]
        if not points:
            return
        xs = [x for x, _ in points]
        ax.plot(xs, [r["estimate"] for _, r in points], marker=marker, ls=line, color=colour, label=label)
        bounded = [(x, r["ci95"]) for x, r in points if None not in r["ci95"]]
        ax.vlines([x for x, _ in bounded], [c[0] for _, c in bounded], [c[1] for _, c in bounded], color=colour)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for role, colour in (("roteq", "C0"), ("cnn", "C1"), ("cnn_params", "C2")):
        plot(axes[0], [(f, f"level.main.{arch[role]}.{fraction_label(f)}.ecker") for f in MAIN_FRACTIONS],
             arch[role], colour)
    axes[0].set(xscale="log", xlabel="fraction of the training data", ylabel="fraction of the ceiling (Ecker)",
                title="Fig. 3: performance per architecture")
    for stem, label, colour in (("gap", f"{arch['roteq']} - {arch['cnn']}", "C1"),
                                ("params_gap", f"{arch['roteq']} - {arch['cnn_params']}", "C2")):
        plot(axes[1], [(f, f"{stem}.main.{fraction_label(f)}.ecker") for f in MAIN_FRACTIONS], label, colour)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(xscale="log", xlabel="fraction of the training data", ylabel="gap (fraction of the ceiling)",
                title="Fig. 3: roteq advantage")
    for ax in axes:
        ax.set_xticks(MAIN_FRACTIONS, [fraction_label(f) for f in MAIN_FRACTIONS])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, os.path.join(folder, "fig3.png"), write_atomically))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, colour in (("direct", "C1"), ("transfer", "C0")):
        plot(ax, [(f, f"level.transfer.{kind}.{fraction_label(f)}.lurz") for f in TRANSFER_FRACTIONS], kind, colour)
    for kind, marker in (("random", "x"), ("disjoint", "s")):
        plot(ax, [(NULL_FRACTION, f"level.transfer.{kind}.{fraction_label(NULL_FRACTION)}.lurz")],
             f"{kind} frozen core", "grey", marker, "none")
    ax.set(xscale="log", xlabel="fraction of the target's training images", ylabel="fraction of the oracle (Lurz)",
           title="Lurz transfer")
    ax.set_xticks(TRANSFER_FRACTIONS, [fraction_label(f) for f in TRANSFER_FRACTIONS])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, os.path.join(folder, "transfer.png"), write_atomically))
    plt.close(fig)
    return written


def _save(fig, path, write_atomically):
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    return path


def build_document(manifest, seeds, runs, results, n_resamples, bootstrap_seed):
    public = []
    for r in runs:
        public.append({k: r.get(k) for k in ("seed", "arm", "name", "kind", "architecture", "data_fraction",
                                               "status", "message", "steps", "iterations", "wall_seconds", "cap",
                                               "cap_source", "cap_hit", "source", "checkpoint")}
                      | {"evaluated": bool(r.get("evaluated"))})
    timed = [r["wall_seconds"] for r in runs if r["wall_seconds"] is not None]
    return {
        "protocol": "docs/replication/protocol.md",
        "generated_by": "analysis/replication.py",
        "manifest": os.path.abspath(manifest["_path"]),
        "simulator_seeds": manifest["simulator_seeds"],
        "seeds_with_data": [sd.seed for sd in seeds],
        "arms_analysed": manifest.get("arms_analysed", list(ARMS)),
        "architectures": manifest["architectures"],
        "rules": RULES,
        "bootstrap": {"resamples": n_resamples, "seed": bootstrap_seed, "interval": "2.5 and 97.5 percentiles",
                      "levels": "simulator seeds with replacement; per drawn seed its test photographs "
                                "(item_info/source_photo) with replacement, shared by its arms and runs, and per "
                                "arm its neurons with replacement; correlations, oracles and the ceiling mean "
                                "recomputed on the draw"},
        "results": [{k: v for k, v in r.items()} for r in results],
        "runs": public,
        "failed_runs": [f"{r['seed']} {r['arm']} {r['name']}: {r['status']} {r['message']}".strip()
                        for r in runs if r["status"] != "ok"],
        "cap_rule": "cap_hit: the trainer's status max_iterations (checkpoint training/status, metrics.json "
                    "status); only without a stored status, iterations (the schedule's counter, rewound at each "
                    "learning-rate decay) >= cap (train.max_iterations of the checkpoint's resolved config, or "
                    "trials/hyperparameters/train.max_iterations). steps: all training steps (the results "
                    "file's trials/steps; trials/iterations in format version 2 files), the compute",
        "compute": {"wall_seconds": float(sum(timed)), "runs_with_time": len(timed),
                    "cap_hits": sum(1 for r in runs if r.get("cap_hit")),
                    "failed": sum(1 for r in runs if r["status"] != "ok")},
    }


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifest", help="JSON (or YAML) naming the runs; see the docstring")
    p.add_argument("--out", required=True, help="results.json to write")
    p.add_argument("--tables", help="markdown tables to write (default: next to --out, <stem>_tables.md)")
    p.add_argument("--figures", help="folder for fig3.png and transfer.png (default: the folder of --out)")
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.add_argument("--work", help="folder of the cached predictions (default: the manifest's `work`, else "
                                  "<manifest folder>/work)")
    p.add_argument("--v1sysid", help="the v1sysid executable for `predict` (default: $V1SYSID_EXE, PATH, "
                                     "build/ci/v1sysid)")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples (the protocol: 10000)")
    p.add_argument("--bootstrap-seed", type=int, default=18, help="bootstrap seed (the protocol: 18)")
    p.add_argument("--arms", help="analyse only these arms (comma-separated, of " + ", ".join(ARMS) + "), e.g. "
                                  "main,deep0,absolute for the finished test phase while the transfer runs; the "
                                  "statistics of the arms left out get no estimate (default: every arm)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.resamples < 10:
        p.error("--resamples must be at least 10")
    arms = None
    if args.arms is not None:
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = sorted(set(arms) - set(ARMS))
        if not arms or unknown:
            p.error(f"--arms {args.arms!r}: {'unknown arms ' + ', '.join(unknown) if unknown else 'no arm'}; "
                    f"list some of {', '.join(ARMS)}, separated by commas")
    import report  # its atomic writer and error wording; loads matplotlib, so imported here
    out_dir = os.path.dirname(os.path.abspath(args.out))
    tables = args.tables or os.path.splitext(args.out)[0] + "_tables.md"
    fig_dir = args.figures or out_dir
    outputs = [args.out, tables] + ([] if args.no_figures else [os.path.join(fig_dir, n)
                                                                 for n in ("fig3.png", "transfer.png")])
    log = (lambda msg: print(f"replication: {msg}", file=sys.stderr)) if args.verbose else None
    try:
        for path in outputs:
            if os.path.exists(path) and not args.force:
                raise ReplicationError(path, "output", "exists", "pass --force to replace it", exit_code=3)
        manifest = read_manifest(args.manifest)
        if arms is not None:
            only_arms(manifest, arms)
        work = args.work or resolve(manifest, manifest.get("work", "work"))
        seeds, runs = load(manifest, work, find_v1sysid(args.v1sysid), log)
        results = bootstrap(seeds, statistics(manifest["architectures"]), args.resamples, args.bootstrap_seed,
                            log)
        doc = _json_safe(build_document(manifest, seeds, runs, results, args.resamples, args.bootstrap_seed))
        for folder in {os.path.dirname(os.path.abspath(x)) for x in outputs}:
            os.makedirs(folder, exist_ok=True)
        report.write_atomically(args.out, lambda f: f.write(json.dumps(doc, indent=1) + "\n"))
        report.write_atomically(tables, lambda f: f.write(markdown(doc)))
        if not args.no_figures:
            figures(doc, fig_dir, report.write_atomically)
    except ReplicationError as e:
        print(f"replication.py: error: {e}", file=sys.stderr)
        return e.exit_code
    except report.OutputError as e:
        print(f"replication.py: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # creating the output folders; the files themselves fail as report.OutputError
        print(f"replication.py: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 7 if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else 3
    for r in doc["results"]:
        if r["rule"]:
            print(f"{r['name']}: {_fmt(r['estimate'])} [{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}] "
                  f"holds {r['holds']} ({r['n_seeds']} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
