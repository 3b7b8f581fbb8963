"""analysis/replication.py: the statistics of the pre-registered replication (issue 18, protocol sections 5-7).

Synthetic runs with a known structure: a digital V1 whose test responses are signal + Gaussian noise (so the
analytic ceiling is known), sweep results files in the layout of `v1sysid sweep` (with row checksums), checkpoint
files and cached predictions next to them (so no training runs): prediction = signal + error, a run with a
smaller error predicts better. Checked: the per-neuron metrics against independent numpy code and
v1analysis.test_correlation_per_neuron; the sign of a known effect; a null (two runs with the same error level)
whose interval covers 0 and whose table1 verdict is False; resampling by photograph gives wider intervals than
by image when the images of a photograph share their prediction errors; the same seed gives the same numbers;
failed runs, cap hits, missing runs (fewer seeds), a missing item_info/source_photo, outputs that exist.
One test runs `v1sysid predict` on a tiny trained model when V1SYSID_EXE is set.
"""
import json
import re
import shutil
import os
import subprocess
import sys
import tempfile
import time
import unittest

import h5py
import numpy as np

EXE = os.environ.get("V1SYSID_EXE", "")
ANALYSIS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis")
TOOL = os.path.join(ANALYSIS, "replication.py")
sys.path.insert(0, ANALYSIS)
import replication as rp  # noqa: E402
import v1analysis  # noqa: E402

ROTEQ, CNN, CNN8 = "roteq_4x8", "cnn_32", "cnn_8"
CONFIG_TEXT = "core:\n  kind: cnn\n  channels: [8]\ntrain:\n  schedule: ecker\n  max_iterations: {cap}\n  seed: 1\n"


def write_dataset(path, signal, responses, trial_image, image_photo, ceiling, source_photo=True):
    """A StaticImageSet-like file with only what the analysis reads: 4 training trials, then the test tier."""
    n_train = 4
    n_neurons = signal.shape[1]
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["responses"] = np.concatenate([rng.random((n_train, n_neurons)), responses]).astype(np.float32)
        f["tiers"] = np.array([b"train"] * n_train + [b"test"] * len(trial_image))
        f["item_info/frame_image_id"] = np.concatenate([np.arange(1000, 1000 + n_train), 10 + trial_image])
        if source_photo:
            f["item_info/source_photo"] = np.concatenate([np.full(n_train, 99), image_photo[trial_image]]) \
                .astype(np.int64)
        f["gt/ceiling_correlation"] = ceiling


def write_results(path, rows, n_neurons=4):
    """A results file in the layout of `v1sysid sweep` (docs/formats.md) with valid row checksums. rows:
    [(architecture, fraction, status, iterations, wall_seconds)]."""
    n = len(rows)
    with h5py.File(path, "w") as f:
        t = f.create_group("trials")
        t["trial_id"] = np.arange(n, dtype=np.int64)
        t["architecture"] = np.array([r[0].encode() for r in rows], dtype="S64")
        t["data_fraction"] = np.array([r[1] for r in rows], dtype=np.float64)
        t["seed"] = np.ones(n, dtype=np.int64)
        t["hyperparameters/core.smooth_weight"] = np.full(n, 0.01)
        t["status"] = np.array([r[2].encode() for r in rows], dtype="S16")
        t["message"] = np.array([b"" if r[2] == "ok" else b"boom" for r in rows], dtype="S256")
        for name in ("best_val_loss", "test_correlation", "feve", "fraction_oracle"):
            t[name] = np.full(n, 0.5)
        t["iterations"] = np.array([r[3] for r in rows], dtype=np.int64)
        t["wall_seconds"] = np.array([r[4] for r in rows], dtype=np.float64)
        t["rank"] = np.zeros(n, dtype=np.int32)
        t["host"] = np.array([b"h"] * n, dtype="S64")
        t["val_curve"] = np.full((n, 3), np.nan)
        t["neuron_correlation"] = np.full((n, n_neurons), np.nan, dtype=np.float32)
        t["row_checksum"] = v1analysis.row_checksums(t)
        f.attrs["format_version"] = 2


class Synthetic:
    """Seeds x arms of a synthetic protocol. Each seed's test set: n_photos photographs x per_photo images x
    repeats. Response = signal + N(0, noise_sd); prediction of a run = signal + error with SD error_sd[run]
    (per image and neuron), plus, with photo_error, a part shared by the images of a photograph."""

    def __init__(self, root, seeds=(3101, 3102, 3103), n_neurons=40, n_photos=20, per_photo=3, repeats=4,
                 noise_sd=1.0, errors=None, photo_error=0.0, cap=100, by_image=False, transfer=True,
                 skip=(), failed=(), transfer_sweeps=False):
        self.root = root
        self.manifest = {"simulator_seeds": list(seeds), "seeds": {}}
        errors = errors or {}
        for s in seeds:
            rng = np.random.default_rng(s)
            n_img = n_photos * per_photo
            image_photo = np.repeat(np.arange(n_photos), per_photo) + 7 * s  # any integer ids
            if by_image:
                image_photo = np.arange(n_img) + 7 * s
            trial_image = np.tile(np.arange(n_img), repeats)
            arms = {}
            arm_runs = {"main": [(a, f) for a in (ROTEQ, CNN, CNN8) for f in rp.MAIN_FRACTIONS],
                        "deep0": [(a, 0.25) for a in (ROTEQ, CNN, CNN8)],
                        "absolute": [(a, 0.25) for a in (ROTEQ, CNN, CNN8)]}
            if transfer:
                arm_runs["transfer"] = ([("direct", f) for f in rp.TRANSFER_FRACTIONS] +
                                        [("transfer", f) for f in rp.TRANSFER_FRACTIONS] +
                                        [("random", 0.4), ("disjoint", 0.4)])
            for arm, runs in arm_runs.items():
                folder = os.path.join(root, str(s), arm)
                os.makedirs(folder, exist_ok=True)
                # Signal shared by the images of one photograph in part, so photographs are real clusters.
                # (offset 10: positive responses, as a digital V1's, which v1analysis clips at 0).
                signal = 10 + (rng.normal(size=(n_photos, n_neurons))[np.repeat(np.arange(n_photos), per_photo)] +
                               rng.normal(size=(n_img, n_neurons)))
                responses = signal[trial_image] + noise_sd * rng.normal(size=(len(trial_image), n_neurons))
                var_s = signal.var(axis=0)
                ceiling = np.sqrt(var_s / (var_s + noise_sd ** 2 / repeats))
                data = os.path.join(folder, "data.h5")
                write_dataset(data, signal, responses, trial_image, image_photo, ceiling)
                rows, entries = [], []
                for label, fraction in runs:
                    name = f"{label}_{fraction:g}"
                    status = "failed" if (s, arm, name) in failed else "ok"
                    if (s, arm, name) in skip:
                        continue
                    sd = errors.get((s, label), errors.get((arm, label, fraction), errors.get(label, 0.5)))
                    e = sd * rng.normal(size=(n_img, n_neurons))
                    if photo_error:
                        # The run's own photo-level error: independent between runs, shared within a photograph
                        # and by every neuron, so that averaging over neurons does not remove it.
                        e = e + photo_error * rng.normal(size=(n_photos, 1))[np.repeat(np.arange(n_photos), per_photo)]
                    prediction = (signal + e)[trial_image]
                    # The cap ends roteq at 100 % and direct at 100 %; the others stop early after more steps than
                    # the cap (the schedule rewinds its counter at each learning-rate decay).
                    hit = (label, fraction) in ((ROTEQ, 1.0), ("direct", 1.0))
                    iterations = cap if hit else cap // 2
                    steps = cap + 20 if hit else cap + 10
                    as_train_runs = arm == "transfer" and not transfer_sweeps
                    if as_train_runs:
                        run_dir = os.path.join(folder, name)
                        os.makedirs(run_dir, exist_ok=True)
                        ckpt = os.path.join(run_dir, "checkpoint.h5")
                        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
                            json.dump({"status": ("max_iterations" if hit else "finished") if status == "ok" else
                                       "diverged", "iterations": iterations, "steps": steps, "wall_seconds": 10.0},
                                      f)
                        entries.append({"name": name, "kind": label, "data_fraction": fraction,
                                        "checkpoint": ckpt})
                    else:
                        ckpt = os.path.join(folder, "ckpt", f"trial_{len(rows)}.h5")
                        rows.append((label, fraction, status, steps, 20.0))
                        name = f"{label}_{fraction:g}"
                    if status != "ok":
                        continue
                    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
                    with h5py.File(ckpt, "w") as f:
                        f.attrs["config"] = CONFIG_TEXT.format(cap=cap)
                        if not as_train_runs:
                            f.attrs["trial_id"] = len(rows) - 1
                        f.create_group("training")
                        f["training"].attrs.update({"status": "max_iterations" if hit else "finished",
                                                    "iterations": iterations, "steps": steps})
                    pred = os.path.join(root, "work", str(s), arm, f"{name}.pred.h5")
                    os.makedirs(os.path.dirname(pred), exist_ok=True)
                    with h5py.File(pred, "w") as f:
                        f["predictions"] = prediction.astype(np.float32)
                        f["image_ids"] = (10 + trial_image).astype(np.int64)
                        f.attrs["tier"] = "test"
                        f.attrs["checkpoint"] = os.path.abspath(ckpt)
                if arm == "transfer" and not transfer_sweeps:
                    arms[arm] = {"data": data, "runs": entries}
                else:
                    results = os.path.join(folder, "results.h5")
                    write_results(results, rows, n_neurons)
                    arms[arm] = {"data": data, "sweeps": [{"results": results,
                                                           "checkpoints": os.path.join(folder, "ckpt")}]}
            self.manifest["seeds"][str(s)] = arms
        self.path = os.path.join(root, "manifest.json")
        with open(self.path, "w") as f:
            json.dump(self.manifest, f)

    def analyse(self, resamples=400, seed=18):
        m = rp.read_manifest(self.path)
        seeds, runs = rp.load(m, os.path.join(self.root, "work"), None)
        results = rp.bootstrap(seeds, rp.statistics(m["architectures"]), resamples, seed)
        return {r["name"]: r for r in results}, runs, seeds


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300)


class MetricsTest(unittest.TestCase):
    def test_point_metrics_match_direct_numpy(self):
        with tempfile.TemporaryDirectory() as tmp:
            syn = Synthetic(tmp, seeds=(3101,), transfer=False)
            _, _, seeds = syn.analyse(resamples=10)
            sd = seeds[0]
            tier = sd.tiers["main"]
            data = syn.manifest["seeds"]["3101"]["main"]["data"]
            with h5py.File(os.path.join(tmp, "work", "3101", "main", f"{ROTEQ}_1.pred.h5"), "r") as f:
                pred, ids = f["predictions"][()].astype(np.float64), f["image_ids"][()]
            ecker, single, oracle = rp.per_neuron(tier, sd.runs[("main", "roteq", 1.0)])
            np.testing.assert_allclose(ecker, v1analysis.test_correlation_per_neuron(pred, ids, data), atol=1e-9)
            with h5py.File(data, "r") as f:
                y = f["responses"][()][4:].astype(np.float64)
            for n in range(y.shape[1]):
                self.assertAlmostEqual(single[n], np.corrcoef(pred[:, n], y[:, n])[0, 1], places=9)
                loo = np.empty(len(ids))
                for u in np.unique(ids):
                    rows = ids == u
                    loo[rows] = (y[rows, n].sum() - y[rows, n]) / (rows.sum() - 1)
                self.assertAlmostEqual(oracle[n], np.corrcoef(loo, y[:, n])[0, 1], places=9)

    def test_constant_prediction_counts_as_zero(self):
        r = rp.pearson_from_sums(np.array([4.0]), np.array([4.0]), np.array([2.0]), np.array([4.0]),
                                 np.array([3.0]), np.array([2.0]))
        self.assertEqual(r[0], 0.0)  # x constant (variance 0): 0, not NaN


class BootstrapTest(unittest.TestCase):
    def test_known_effect_null_and_determinism(self):
        with tempfile.TemporaryDirectory() as tmp:
            # roteq predicts better everywhere; at 100 % on main, roteq and cnn_32 have the same error (null).
            errors = {ROTEQ: 0.3, CNN: 1.2, CNN8: 1.2, ("main", ROTEQ, 1.0): 0.8, ("main", CNN, 1.0): 0.8,
                      "transfer": 0.4, "direct": 0.4, "random": 2.0, "disjoint": 1.0}
            syn = Synthetic(tmp, errors=errors)
            res, runs, _ = syn.analyse()
            again, _, _ = syn.analyse()
            other, _, _ = syn.analyse(seed=19)
        t1 = res["table1"]
        self.assertEqual(t1["n_seeds"], 3)
        self.assertLess(t1["ci95"][0], 0)  # the null: the interval covers 0
        self.assertGreater(t1["ci95"][1], 0)
        self.assertIs(t1["holds"], False)
        self.assertLess(abs(t1["estimate"]), 0.05)
        # The known effect: the gaps at 12.5 % and 25 % are positive, so fig3 is positive and holds.
        self.assertGreater(res["gap.main.0.25.ecker"]["ci95"][0], 0.05)
        self.assertGreater(res["fig3"]["estimate"], 0.05)
        self.assertIs(res["fig3"]["holds"], True)
        self.assertGreater(res["transfer_minus_random.lurz"]["ci95"][0], 0)
        # dose response: same gaps in both arms -> no verdict in favour; equivariance null likewise.
        self.assertLess(res["dose_response"]["ci95"][0], 0)
        self.assertGreater(res["dose_response"]["ci95"][1], 0)
        self.assertIs(res["dose_response"]["holds"], False)
        for name in ("table1", "fig3", "lurz_transfer", "equivariance_null", "dose_response"):
            self.assertEqual(res[name]["estimate"], again[name]["estimate"])
            self.assertEqual(res[name]["ci95"], again[name]["ci95"])  # same seed, same numbers
            self.assertEqual(res[name]["estimate"], other[name]["estimate"])  # the point does not depend on it
            self.assertIsNone(res[name + (".lurz" if name != "lurz_transfer" else ".ecker")]["holds"])
        self.assertNotEqual(res["table1"]["ci95"], other["table1"]["ci95"])
        self.assertEqual(res["level.main.roteq_4x8.1.ecker"]["estimate"],
                         np.mean(res["level.main.roteq_4x8.1.ecker"]["per_seed"]))
        # Ecker: a fraction of the ceiling, below 1. Lurz: a good model's single-trial correlation can exceed the
        # leave-one-out oracle (whose mean of R - 1 = 3 repeats is noisier than the signal itself).
        self.assertTrue(1.0 < res["level.transfer.transfer.0.4.lurz"]["estimate"] < 1.2)
        self.assertTrue(0.3 < res["level.transfer.random.0.4.lurz"]["estimate"] < 0.9)
        self.assertTrue(0.5 < res["level.main.roteq_4x8.0.25.ecker"]["estimate"] < 1.0)
        cap_hits = [r for r in runs if r["cap_hit"]]
        # Flagged from the trainer's status, not from steps >= cap (every run here has more steps than the cap).
        self.assertEqual({(r["arm"], r["name"]) for r in cap_hits if r["seed"] == 3101},
                         {("main", f"{ROTEQ}_1"), ("transfer", "direct_1")})
        self.assertEqual(len(cap_hits), 6)
        self.assertTrue(all(r["steps"] > r["cap"] for r in runs if r["cap"] is not None))
        self.assertTrue(all(r["cap_source"] == "checkpoint config train.max_iterations" for r in cap_hits))
        self.assertEqual({r["iterations"] for r in cap_hits}, {100})

    def test_a_transfer_arm_of_sweeps_reads_as_the_same_runs_of_train(self):
        # The transfer sweeps name their architectures by kind (sweeps/replication/transfer_*.yaml); their rows give
        # the same runs, and so the same statistics, as the same runs made with `v1sysid train`.
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            from_runs, runs_a, _ = Synthetic(a, seeds=(3101,)).analyse(resamples=50)
            from_sweeps, runs_b, _ = Synthetic(b, seeds=(3101,), transfer_sweeps=True).analyse(resamples=50)
        kinds = lambda runs: sorted((r["name"], r["kind"], r["data_fraction"], r["status"], r["cap_hit"])
                                    for r in runs if r["arm"] == "transfer")
        self.assertEqual(kinds(runs_a), kinds(runs_b))
        self.assertEqual(len(kinds(runs_b)), 10)
        for name in ("lurz_transfer", "transfer_minus_random.lurz", "level.transfer.transfer.0.4.lurz"):
            self.assertAlmostEqual(from_runs[name]["estimate"], from_sweeps[name]["estimate"], places=12)
            self.assertEqual(from_runs[name]["ci95"], from_sweeps[name]["ci95"])

    def test_photograph_resampling_is_wider_than_image_resampling(self):
        widths = {}
        for by_image in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                syn = Synthetic(tmp, seeds=(3101,), transfer=False, n_photos=10, per_photo=8,
                                errors={ROTEQ: 0.5, CNN: 0.5, CNN8: 0.5}, photo_error=1.0, by_image=by_image)
                res, _, _ = syn.analyse(resamples=600)
            widths[by_image] = np.mean([res[n]["ci95"][1] - res[n]["ci95"][0]
                                        for n in ("gap.main.0.125.ecker", "gap.main.0.25.ecker",
                                                  "gap.main.1.ecker")])
        self.assertGreater(widths[False], 1.3 * widths[True])

    def test_the_seeds_and_the_neurons_are_resampled(self):
        with tempfile.TemporaryDirectory() as tmp:
            # The roteq advantage differs between seeds: the interval spans a good part of the seeds' spread
            # (resampling neurons and images alone would give an interval as narrow as one seed's).
            syn = Synthetic(tmp, transfer=False, errors={(3101, ROTEQ): 0.2, (3102, ROTEQ): 0.7,
                                                         (3103, ROTEQ): 1.2, CNN: 1.2, CNN8: 1.2})
            res, _, _ = syn.analyse(resamples=400)
        t1 = res["table1"]
        spread = max(t1["per_seed"]) - min(t1["per_seed"])
        self.assertGreater(spread, 0.15)
        self.assertGreater(t1["ci95"][1] - t1["ci95"][0], 0.5 * spread)
        with tempfile.TemporaryDirectory() as tmp:
            # One seed, 400 single-image photographs (little image-level noise), neurons that differ widely in
            # which run predicts them better: the interval is at least as wide as the neurons' spread implies.
            n = 60
            rng = np.random.default_rng(1)
            syn = Synthetic(tmp, seeds=(3101,), transfer=False, n_neurons=n, n_photos=400, per_photo=1,
                            repeats=2, noise_sd=0.3, errors={ROTEQ: rng.uniform(0.1, 3, n),
                                                             CNN: rng.uniform(0.1, 3, n)})
            res, _, seeds = syn.analyse(resamples=400)
        sd = seeds[0]
        ceiling = sd.tiers["main"].ceiling.mean()
        d = (rp.per_neuron(sd.tiers["main"], sd.runs[("main", "roteq", 1.0)])[0] -
             rp.per_neuron(sd.tiers["main"], sd.runs[("main", "cnn", 1.0)])[0]) / ceiling
        self.assertAlmostEqual(res["table1"]["estimate"], d.mean(), places=12)
        width = res["table1"]["ci95"][1] - res["table1"]["ci95"][0]
        self.assertGreater(width, 0.8 * 2 * 1.96 * d.std() / np.sqrt(n))

    def test_missing_and_failed_runs_reduce_the_seeds(self):
        with tempfile.TemporaryDirectory() as tmp:
            syn = Synthetic(tmp, failed={(3102, "main", f"{CNN}_1")}, skip={(3103, "transfer", "direct_1")})
            res, runs, _ = syn.analyse(resamples=50)
        self.assertEqual(res["table1"]["n_seeds"], 2)
        self.assertEqual(res["table1"]["seeds"], [3101, 3103])
        self.assertEqual(res["lurz_transfer"]["n_seeds"], 2)
        self.assertEqual(res["dose_response"]["n_seeds"], 3)
        failed = [r for r in runs if r["status"] != "ok"]
        self.assertEqual([(r["seed"], r["name"], r["status"]) for r in failed], [(3102, f"{CNN}_1", "failed")])
        self.assertIsNone(failed[0]["cap_hit"])


class CommandLineTest(unittest.TestCase):
    def test_outputs_errors_and_force(self):
        with tempfile.TemporaryDirectory() as tmp:
            syn = Synthetic(tmp, seeds=(3101, 3102), n_neurons=12, n_photos=8, per_photo=2)
            out = os.path.join(tmp, "docs", "results.json")
            p = run_tool(syn.path, "--out", out, "--resamples", "200")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("table1:", p.stdout)
            with open(out) as f:
                doc = json.load(f)
            self.assertEqual(doc["simulator_seeds"], [3101, 3102])
            self.assertEqual(set(doc["rules"]), set(rp.RULES))
            names = {r["name"] for r in doc["results"]}
            self.assertTrue(set(rp.RULES) <= names)
            for r in doc["results"]:
                self.assertEqual(set(r) >= {"name", "estimate", "ci95", "holds", "description", "metric",
                                            "n_seeds"}, True)
            self.assertEqual(len(doc["runs"]), 2 * (9 + 3 + 3 + 10))
            self.assertTrue(all("wall_seconds" in r and "cap_hit" in r for r in doc["runs"]))
            for name in ("results_tables.md", "fig3.png", "transfer.png"):
                self.assertTrue(os.path.getsize(os.path.join(tmp, "docs", name)) > 100, name)
            with open(out) as f:
                before = f.read()
            p = run_tool(syn.path, "--out", out, "--resamples", "200")
            self.assertEqual(p.returncode, 3)
            self.assertIn("pass --force", p.stderr)
            p = run_tool(syn.path, "--out", out, "--resamples", "200", "--force")
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(out) as f:
                self.assertEqual(f.read(), before)  # deterministic
            # A dataset without item_info/source_photo: the file and the field are named.
            data = syn.manifest["seeds"]["3101"]["main"]["data"]
            with h5py.File(data, "a") as f:
                del f["item_info/source_photo"]
            p = run_tool(syn.path, "--out", out, "--resamples", "200", "--force")
            self.assertEqual(p.returncode, 4)
            self.assertIn(f"{data}: item_info/source_photo: missing", p.stderr)
            p = run_tool(os.path.join(tmp, "nope.json"), "--out", out, "--force")
            self.assertEqual(p.returncode, 3)
            self.assertIn("nope.json", p.stderr)

    def test_arms_analyses_a_subset_of_the_arms(self):
        # --arms main,deep0,absolute (the test phase while the transfer runs): the rules of those arms get the
        # estimates of the full analysis, the transfer rule none, and the outputs say which arms were analysed.
        with tempfile.TemporaryDirectory() as tmp:
            syn = Synthetic(tmp, seeds=(3101, 3102), n_neurons=12, n_photos=8, per_photo=2)
            full, part = os.path.join(tmp, "full.json"), os.path.join(tmp, "part.json")
            p = run_tool(syn.path, "--out", full, "--resamples", "50", "--no-figures")
            self.assertEqual(p.returncode, 0, p.stderr)
            p = run_tool(syn.path, "--out", part, "--resamples", "50", "--no-figures", "--arms", "main,deep0,absolute")
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(full) as f:
                full_doc = json.load(f)
            with open(part) as f:
                part_doc = json.load(f)
            self.assertEqual(full_doc["arms_analysed"], list(rp.ARMS))
            self.assertEqual(part_doc["arms_analysed"], ["main", "deep0", "absolute"])
            by_name = {r["name"]: r for r in full_doc["results"]}
            for r in part_doc["results"]:
                if r["name"].split(".")[0] in ("table1", "fig3", "equivariance_null", "dose_response"):
                    self.assertIsNotNone(r["estimate"], r["name"])
                    self.assertAlmostEqual(r["estimate"], by_name[r["name"]]["estimate"], places=12, msg=r["name"])
                    self.assertEqual(r["n_seeds"], 2, r["name"])
                if "transfer" in r["name"]:
                    self.assertIsNone(r["estimate"], r["name"])
                    self.assertEqual(r["n_seeds"], 0, r["name"])
            self.assertEqual({r["arm"] for r in part_doc["runs"]}, {"main", "deep0", "absolute"})
            self.assertIn("transfer", {r["arm"] for r in full_doc["runs"]})
            with open(os.path.join(tmp, "part_tables.md")) as f:
                self.assertIn("Arms analysed: main, deep0, absolute (the others left out with --arms)", f.read())
            with open(os.path.join(tmp, "full_tables.md")) as f:
                self.assertNotIn("Arms analysed", f.read())
            for bad in ("main,nope", ","):
                p = run_tool(syn.path, "--out", os.path.join(tmp, "bad.json"), "--arms", bad)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("--arms", p.stderr)
                self.assertFalse(os.path.exists(os.path.join(tmp, "bad.json")))
            self.assertIn("unknown arms nope", run_tool(syn.path, "--out", os.path.join(tmp, "x.json"), "--arms", "main,nope").stderr)

    @unittest.skipIf(not hasattr(os, "geteuid") or os.geteuid() != 0, "mounting a small tmpfs needs root")
    def test_a_full_disk_is_exit_7_with_one_line_and_no_partial_outputs(self):
        from test_analysis import full_tmpfs
        with tempfile.TemporaryDirectory() as tmp:
            syn = Synthetic(tmp, seeds=(3101, 3102), n_neurons=12, n_photos=8, per_photo=2)
            with full_tmpfs(os.path.join(tmp, "disk")) as disk:
                out = os.path.join(disk, "results.json")
                p = run_tool(syn.path, "--out", out, "--resamples", "50", "--work", os.path.join(tmp, "work"))
                self.assertEqual(p.returncode, 7, p.stderr)
                self.assertNotIn("Traceback", p.stderr)
                self.assertRegex(p.stderr.strip().splitlines()[-1], r"^replication.py: error: .*disk full")
                self.assertEqual(sorted(os.listdir(disk)), ["filler"])


SIM_CONFIG = """stimuli: stimuli.h5
seed: 3
n_neurons: 12
n_train: 100
n_validation: 20
n_test_images: 12
test_repeats: 4
image: {height: 16, width: 30}
noise: {model: poisson}
"""
SWEEP = """name: e2e
seed: 7
base_model: MODEL
architectures:
  - name: roteq_4x8
    overrides: {core: {channels: [4, 4]}, train: {max_iterations: 20, val_every: 5, batch_size: 32}}
  - name: cnn_32
    overrides: {train: {max_iterations: 40, val_every: 5, batch_size: 32}}
grid:
  data_fraction: [1.0]
"""


@unittest.skipUnless(EXE, "V1SYSID_EXE is not set (run through ctest)")
class PredictEndToEndTest(unittest.TestCase):
    """A tiny sweep with --save-checkpoints and a `v1sysid train` run: the tool calls `v1sysid predict`, caches
    the predictions, and its per-neuron Ecker correlation is the sweep's own (trials/neuron_correlation)."""

    def test_predict_cache_and_metrics_match_the_sweep(self):
        from test_sim import write_stimuli
        with tempfile.TemporaryDirectory() as tmp:
            def v1sysid(*args):
                p = subprocess.run([EXE, *args], cwd=tmp, capture_output=True, text=True, timeout=300,
                                   env=dict(os.environ, OMP_NUM_THREADS="1"))
                self.assertEqual(p.returncode, 0, p.stderr)

            write_stimuli(os.path.join(tmp, "stimuli.h5"), n_trainval=120, n_test=12)
            with open(os.path.join(tmp, "sim.yaml"), "w") as f:
                f.write(SIM_CONFIG)
            model = os.path.join(ANALYSIS, "..", "sweeps", "models", "cnn_tiny.yaml")
            with open(os.path.join(tmp, "sweep.yaml"), "w") as f:
                f.write(SWEEP.replace("MODEL", os.path.abspath(model)))
            v1sysid("simulate", "sim.yaml", "--stimuli", "stimuli.h5", "--out", "data.h5")
            with h5py.File(os.path.join(tmp, "data.h5"), "a") as f:
                if "item_info/source_photo" not in f:  # until the simulator writes it: two images per photograph
                    f["item_info/source_photo"] = f["item_info/frame_image_id"][()] // 2
            v1sysid("sweep", "sweep.yaml", "--data", "data.h5", "--out", "res.h5", "--save-checkpoints", "ckpt")
            v1sysid("train", os.path.abspath(model), "--data", "data.h5", "--out", "direct", "--max-iterations", "15",
                    "--quiet")
            manifest = {"simulator_seeds": [3101], "seeds": {"3101": {
                "main": {"data": "data.h5", "sweeps": [{"results": "res.h5", "checkpoints": "ckpt"}]},
                "transfer": {"data": "data.h5", "runs": [{"name": "direct_1", "kind": "direct", "data_fraction": 1.0,
                                                          "checkpoint": "direct/checkpoint.h5"}]}}}}
            path = os.path.join(tmp, "manifest.json")
            with open(path, "w") as f:
                json.dump(manifest, f)
            out = os.path.join(tmp, "out", "results.json")
            p = run_tool(path, "--out", out, "--resamples", "50", "--v1sysid", EXE, "--no-figures")
            self.assertEqual(p.returncode, 0, p.stderr)
            cached = {n: os.path.join(tmp, "work", "3101", arm, n + ".pred.h5")
                      for arm, n in (("main", "roteq_4x8_1"), ("main", "cnn_32_1"), ("transfer", "direct_1"))}
            stamps = {n: os.stat(c).st_mtime_ns for n, c in cached.items()}
            p = run_tool(path, "--out", out, "--resamples", "50", "--v1sysid", "/nonexistent", "--no-figures",
                         "--force")
            self.assertEqual(p.returncode, 0, p.stderr)  # every prediction is cached: predict is not run
            self.assertEqual(stamps, {n: os.stat(c).st_mtime_ns for n, c in cached.items()})
            tier = rp.TestTier(os.path.join(tmp, "data.h5"))
            sweep = v1analysis.read_results(os.path.join(tmp, "res.h5"))
            for trial, name in enumerate(("roteq_4x8_1", "cnn_32_1")):
                with h5py.File(cached[name], "r") as f:
                    sums = tier.run_sums(f["predictions"][()].astype(np.float64), cached[name])
                ecker, _, _ = rp.per_neuron(tier, sums)
                np.testing.assert_allclose(ecker, sweep["neuron_correlation"][trial], atol=2e-5)
            with open(out) as f:
                runs = {r["name"]: r for r in json.load(f)["runs"]}
            for name, ckpt in (("roteq_4x8_1", "ckpt/trial_0.h5"), ("cnn_32_1", "ckpt/trial_1.h5"),
                               ("direct_1", "direct/checkpoint.h5")):
                with h5py.File(os.path.join(tmp, ckpt), "r") as f:
                    status = v1analysis.text(f["training"].attrs["status"])
                self.assertEqual(runs[name]["cap_hit"], status == "max_iterations", name)
            self.assertEqual((runs["roteq_4x8_1"]["cap"], runs["cnn_32_1"]["cap"], runs["direct_1"]["cap"]),
                             (20, 40, 15))


# The start of a stand-in v1sysid's script: $out and $ckpt from --out and --save-checkpoints.
# A stand-in v1sysid answers --version as a clean build of the commit the protocol fixes for the phase
# (STUB_GIT, set by ReplicationRunsScript.run_script).
STUB_OUTPUTS = """[ "$1" = --version ] && { echo "v1sysid 0.1.0 (git ${STUB_GIT:-unknown})"; exit 0; }
out=""; prev=""; ckpt=""
for a in "$@"; do
  [ "$prev" = --out ] && out=$a
  [ "$prev" = --save-checkpoints ] && ckpt=$a
  prev=$a
done
"""


class ReplicationRunsScript(unittest.TestCase):
    """analysis/replication_runs.sh: its command line and the manifest it writes for replication.py."""

    SCRIPT = os.path.join(ANALYSIS, "replication_runs.sh")

    @classmethod
    def pinned_commits(cls):
        """{phase: commit} of the script's pinned_commit table (the binaries the protocol fixes)."""
        with open(cls.SCRIPT) as f:
            table = re.search(r"declare -A pinned_commit=\((.*)\)", f.read()).group(1)
        return dict(re.findall(r"\[(\w+)\]=([0-9a-f]+)", table))

    def run_script(self, *args, git=None):
        """Runs the script; a stand-in v1sysid reports the phase's pinned commit unless `git` says otherwise."""
        return subprocess.run(["bash", self.SCRIPT, *args], capture_output=True, text=True,
                              env=self.stub_env(args[0] if args else "", git))

    def stub_env(self, phase, git=None):
        pin = self.pinned_commits().get(phase, "")
        return dict(os.environ, STUB_GIT=git if git is not None else (pin + "0123456789ab")[:12])

    def test_the_test_and_transfer_phases_refuse_a_binary_of_another_commit(self):
        # The protocol fixes each phase's binary; another build, or a dirty build of the pinned commit, would mix
        # code versions within a phase (and a newer one upgrades results files the pinned one cannot resume).
        pins = self.pinned_commits()
        self.assertEqual(pins["test"], "74a7a97")
        with tempfile.TemporaryDirectory() as d:
            stub, log = self.lane_stub(d, 0)
            for phase in ("test", "transfer"):
                for git in ("0123456789ab", (pins[phase] + "0123456789ab")[:12] + "-dirty"):
                    out = os.path.join(d, f"run_{phase}")
                    r = self.run_script(phase, "--out", out, "--v1sysid", stub, "--seeds", "3101", git=git)
                    self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                    self.assertIn(f"the {phase} phase runs the v1sysid of commit {pins[phase]}", r.stderr)
                    self.assertIn(f"says 'v1sysid 0.1.0 (git {git})'", r.stderr)
                    self.assertFalse(os.path.exists(out))
            self.assertFalse(os.path.exists(log))  # nothing ran
            r = self.run_script("test", "--out", os.path.join(d, "ok"), "--v1sysid", stub, "--seeds", "3101",
                                "--archive", os.path.join(d, "no-archive"))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_bad_command_lines_exit_2_and_say_why(self):
        r = self.run_script("bogus", "--out", "x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("dev, test, transfer, status, manifest, archive or restore", r.stderr)
        r = self.run_script("status")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--out DIR is required", r.stderr)

    def test_archive_and_restore_carry_a_sweeps_files_to_a_new_machine(self):
        # The runs folder lives outside the repository, so a new machine lost every sweep; the archive (committed)
        # carries results, saved states, checkpoints and logs, and the phases restore a sweep that DIR lacks.
        files = {"test_main_3101.h5": b"results", "test_main_3101.h5.states/trial_1.state.h5": b"state of trial 1",
                 "ckpt/test_main_3101/trial_0.h5": b"checkpoint 0", "logs/test_main_3101.log": b"progress",
                 "main_3101.h5": b"dataset", "stimuli_3101.h5": b"stimuli"}
        sweep_files = [k for k in files if "main_3101" in k and not k.startswith("main_3101")]

        def write(folder, items):
            for rel, data in items.items():
                os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
                with open(os.path.join(folder, rel), "wb") as f:
                    f.write(data)

        def read(folder, rel):
            with open(os.path.join(folder, rel), "rb") as f:
                return f.read()

        with tempfile.TemporaryDirectory() as d:
            runs, arch, new = (os.path.join(d, x) for x in ("runs", "archive", "new"))
            write(runs, files)
            with open(os.path.join(runs, "test_main_3101.h5.lock"), "w") as f:
                f.write("host=here pid=1\n")
            r = self.run_script("archive", "--out", runs, "--archive", arch)
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn("test_main_3101.h5.lock exists", r.stderr)
            self.assertFalse(os.path.exists(arch))
            os.remove(os.path.join(runs, "test_main_3101.h5.lock"))

            r = self.run_script("archive", "--out", runs, "--archive", arch)
            self.assertEqual(r.returncode, 0, r.stderr)
            for rel in sweep_files:
                self.assertEqual(read(arch, rel), files[rel], rel)
            for dataset in ("main_3101.h5", "stimuli_3101.h5"):  # simulated again from the seed, not archived
                self.assertFalse(os.path.exists(os.path.join(arch, dataset)))

            r = self.run_script("restore", "--out", new, "--archive", arch)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("restored 1 sweeps", r.stdout)
            for rel in sweep_files:
                self.assertEqual(read(new, rel), files[rel], rel)

            # The sweep finished later: a new archive drops the states it no longer has.
            shutil.rmtree(os.path.join(runs, "test_main_3101.h5.states"))
            write(runs, {"test_main_3101.h5": b"results, all finished"})
            self.assertEqual(self.run_script("archive", "--out", runs, "--archive", arch).returncode, 0)
            self.assertFalse(os.path.exists(os.path.join(arch, "test_main_3101.h5.states")))
            self.assertEqual(read(arch, "test_main_3101.h5"), b"results, all finished")

            # Restore never replaces a results file DIR already has (DIR may be ahead of the archive).
            r = self.run_script("restore", "--out", new, "--archive", arch)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("kept", r.stdout)
            self.assertEqual(read(new, "test_main_3101.h5"), b"results")

    @unittest.skipUnless(EXE, "needs V1SYSID_EXE (a dry-run development sweep)")
    def test_status_counts_running_rows_as_unfinished(self):
        # Before, the script's own count took every row that was not "pending" as finished, a live "running"
        # row included; it now prints what `v1sysid status` says.
        with tempfile.TemporaryDirectory() as d:
            results = os.path.join(d, "dev_main_2019.h5")
            sweep = os.path.join(ANALYSIS, "..", "sweeps", "replication", "dev.yaml")
            r = subprocess.run([EXE, "sweep", sweep, "--dry-run", "--out", results], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with h5py.File(results, "r+") as f:
                status = f["trials/status"][...]
                status[0], status[1] = b"running", b"pending"
                f["trials/status"][...] = status
            r = self.run_script("status", "--out", d, "--v1sysid", EXE)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("10 of 12 trials finished", r.stdout)
            self.assertIn("1 running, 1 pending", r.stdout)

    def test_manifest_lists_the_arms_whose_sweeps_exist(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("dev_main_2019.h5", "test_main_3101.h5", "test_25_deep0_3101.h5", "test_main_3102.h5"):
                open(os.path.join(d, name), "w").close()
            r = self.run_script("manifest", "--out", d, "--v1sysid", "/bin/true")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(d, "manifest.json")) as f:
                m = json.load(f)
            self.assertEqual(m["simulator_seeds"], [3101, 3102, 3103])
            self.assertEqual(m["development"], [{"results": "dev_main_2019.h5", "seed": 2019}])
            self.assertEqual(sorted(m["seeds"]), ["3101", "3102"])
            self.assertEqual(sorted(m["seeds"]["3101"]), ["deep0", "main"])
            self.assertEqual(m["seeds"]["3101"]["deep0"],
                             {"data": "deep0_3101.h5", "sweeps": [{"results": "test_25_deep0_3101.h5",
                                                                   "checkpoints": "ckpt/test_25_deep0_3101"}]})
            for name in ("transfer_core_matched_3103.h5", "transfer_target_3103.h5"):
                open(os.path.join(d, name), "w").close()
            r = self.run_script("manifest", "--out", d, "--v1sysid", "/bin/true")
            with open(os.path.join(d, "manifest.json")) as f:
                m = json.load(f)
            self.assertEqual(m["seeds"]["3103"], {"transfer": {"data": "transfer_3103-animal9.h5", "sweeps": [
                {"results": "transfer_target_3103.h5", "checkpoints": "ckpt/transfer_target_3103"},
                {"results": "transfer_core_matched_3103.h5", "checkpoints": "ckpt/transfer_core_matched_3103"}]}})

    def test_the_transfer_phase_runs_its_sweeps_in_order_on_the_right_animals(self):
        # A stand-in v1sysid logs its command lines and writes what each step leaves (the animals, a results file,
        # a trial checkpoint), so the order, the datasets of each sweep and the per-seed folder are checked
        # without hours of training.
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "calls.log")
            stub = os.path.join(d, "v1sysid")
            with open(stub, "w") as f:
                f.write(f"""#!/bin/bash
{STUB_OUTPUTS}echo "$*" >> {log}
case "$1" in
  images) touch "$out" ;;
  simulate) for k in 1 2 3 4 5 6 7 8 9; do touch "${{out%.h5}}-animal$k.h5"; done ;;
  sweep) touch "$out"; mkdir -p "$ckpt"; echo "core of $out" > "$ckpt/trial_0.h5" ;;
esac
""")
            os.chmod(stub, 0o755)
            out = os.path.join(d, "run")
            r = self.run_script("transfer", "--out", out, "--v1sysid", stub, "--seeds", "3101", "--ranks", "1",
                                "--archive", os.path.join(d, "no-archive"))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(log) as f:
                calls = [line.split() for line in f if line.strip()]
            self.assertEqual([c[0] for c in calls], ["images", "simulate", "sweep", "sweep", "sweep", "sweep"])
            self.assertIn("--seed", calls[1])
            animals = lambda call: [os.path.basename(a) for a in call if "-animal" in a]
            self.assertEqual(animals(calls[2]), [f"transfer_3101-animal{k}.h5" for k in (1, 2, 3, 4)])
            self.assertEqual(animals(calls[3]), [f"transfer_3101-animal{k}.h5" for k in (5, 6, 7, 8)])
            self.assertEqual(animals(calls[4]), ["transfer_3101-animal9.h5"])
            self.assertEqual(animals(calls[5]), ["transfer_3101-animal9.h5"])
            folder = os.path.join(out, "transfer_3101")
            self.assertEqual(calls[4][1], os.path.join(folder, "transfer_target.yaml"))
            self.assertEqual(calls[5][1], os.path.join(folder, "transfer_nulls.yaml"))
            with open(os.path.join(folder, "core_disjoint.h5")) as f:
                self.assertIn("transfer_core_disjoint_3101.h5", f.read())
            with open(os.path.join(folder, "transfer_target.yaml")) as f:
                text = f.read()
            self.assertNotIn("../models/", text)
            self.assertTrue(os.path.isfile(re.search(r"model: (\S+)", text).group(1)))
            # A rerun simulates nothing again and resumes every sweep.
            r = self.run_script("transfer", "--out", out, "--v1sysid", stub, "--seeds", "3101", "--ranks", "1")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(log) as f:
                again = [line.split()[0] for line in f if line.strip()][len(calls):]
            self.assertEqual(again, ["sweep"] * 4)

    def lane_stub(self, d, sweep_seconds, fail_on=""):
        """A stand-in v1sysid whose sweeps log their start and end, their MPI world size (the ranks mpirun gave
        the sweep) and take sweep_seconds; a sweep whose --out contains fail_on exits 75 (stopped)."""
        log = os.path.join(d, "calls.log")
        stub = os.path.join(d, "v1sysid")
        with open(stub, "w") as f:
            f.write(f"""#!/bin/bash
{STUB_OUTPUTS}case "$1" in
  images) touch "$out" ;;
  simulate) touch "$out"; for k in 1 2 3 4 5 6 7 8 9; do touch "${{out%.h5}}-animal$k.h5"; done ;;
  sweep)
    [ "${{OMPI_COMM_WORLD_RANK:-0}}" = 0 ] || exit 0
    echo "start $(basename "$out") ranks=${{OMPI_COMM_WORLD_SIZE:-1}} $(date +%s.%N)" >> {log}
    sleep {sweep_seconds}
    echo "end $(basename "$out") $(date +%s.%N)" >> {log}
    if [ -n "{fail_on}" ] && [[ "$out" == *"{fail_on}"* ]]; then exit 75; fi
    touch "$out"; mkdir -p "$ckpt"; echo "core of $out" > "$ckpt/trial_0.h5" ;;
esac
""")
        os.chmod(stub, 0o755)
        return stub, log

    @staticmethod
    def sweep_times(log):
        start, end, ranks = {}, {}, {}
        with open(log) as f:
            for line in f:
                w = line.split()
                if w[0] == "start":
                    start[w[1]], ranks[w[1]] = float(w[3]), int(w[2].split("=")[1])
                else:
                    end[w[1]] = float(w[2])
        return start, end, ranks

    def run_phase_timed(self, d, phase, seeds):
        """Runs `phase` on 2 ranks (2 lanes by default) with a lane_stub of 1 s sweeps in d/run; returns the
        result, the stub and sweep_times of its log."""
        stub, log = self.lane_stub(d, 1)
        r = self.run_script(phase, "--out", os.path.join(d, "run"), "--v1sysid", stub, "--seeds", seeds, "--ranks",
                            "2", "--archive", os.path.join(d, "no-archive"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return (r, stub, *self.sweep_times(log))

    def test_two_lanes_run_two_seeds_side_by_side_on_one_rank_each(self):
        # With 2 ranks and 2 lanes, seed 3101's sweeps and seed 3102's run at the same time, each sweep on one rank:
        # no rank waits while the other finishes a sweep's last trial.
        with tempfile.TemporaryDirectory() as d:
            r, stub, start, end, ranks = self.run_phase_timed(d, "test", "3101 3102")
            out = os.path.join(d, "run")
            names = [f"{sweep}_{arm}_{s}.h5" for s in (3101, 3102)
                     for sweep, arm in (("test", "main"), ("test_25", "deep0"), ("test_25", "absolute"))]
            self.assertEqual(sorted(start), sorted(names))
            self.assertEqual(set(ranks.values()), {1})
            # Within a seed the sweeps run in order; the two seeds' first sweeps overlap.
            for s in (3101, 3102):
                self.assertLessEqual(end[f"test_main_{s}.h5"], start[f"test_25_deep0_{s}.h5"])
                self.assertLessEqual(end[f"test_25_deep0_{s}.h5"], start[f"test_25_absolute_{s}.h5"])
            self.assertLess(start["test_main_3102.h5"], end["test_main_3101.h5"])
            self.assertLess(start["test_main_3101.h5"], end["test_main_3102.h5"])
            self.assertIn("[test_seed 3102] sweep test_main_3102 on 1 rank(s)", r.stdout)
            # --lanes 1 gives the whole 2 ranks to one sweep at a time.
            r = self.run_script("test", "--out", os.path.join(d, "one_lane"), "--v1sysid", stub, "--seeds", "3101",
                                "--ranks", "2", "--lanes", "1", "--archive", os.path.join(d, "no-archive"))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("sweep test_main_3101 on 2 rank(s)", r.stdout)
            r = self.run_script("test", "--out", out, "--ranks", "2", "--lanes", "3", "--v1sysid", stub)
            self.assertEqual(r.returncode, 2)
            self.assertIn("--lanes must be a positive whole number that divides --ranks (2)", r.stderr)

    def test_a_stopped_lane_stops_the_phase_with_its_status_and_the_other_lane_finishes(self):
        with tempfile.TemporaryDirectory() as d:
            stub, log = self.lane_stub(d, 0.2, fail_on="test_main_3102")
            out = os.path.join(d, "run")
            r = self.run_script("test", "--out", out, "--v1sysid", stub, "--seeds", "3101 3102", "--ranks", "2",
                                "--archive", os.path.join(d, "no-archive"))
            self.assertEqual(r.returncode, 75, r.stdout + r.stderr)
            self.assertIn("a lane stopped with exit 75; run the same command again to resume", r.stdout)
            start, end, _ = self.sweep_times(log)
            self.assertIn("test_25_absolute_3101.h5", end)  # the other lane ran its seed to the end
            self.assertNotIn("test_25_deep0_3102.h5", start)  # the stopped lane went no further

    def test_a_second_driver_on_the_same_runs_folder_is_refused_while_the_first_runs(self):
        with tempfile.TemporaryDirectory() as d:
            stub, log = self.lane_stub(d, 3)
            out = os.path.join(d, "run")
            args = ["--out", out, "--v1sysid", stub, "--seeds", "3101", "--archive", os.path.join(d, "archive")]
            first = subprocess.Popen(["bash", self.SCRIPT, "test", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.stub_env("test"))
            try:
                for _ in range(100):  # until the first sweep runs
                    if os.path.exists(log):
                        break
                    time.sleep(0.1)
                for phase in ("test", "transfer", "archive", "restore"):
                    r = self.run_script(phase, *args)
                    self.assertEqual(r.returncode, 2, phase + ": " + r.stdout + r.stderr)
                    self.assertIn(f"another replication_runs.sh phase is running on {out}", r.stderr)
                r = self.run_script("status", *args)  # reading is allowed
                self.assertEqual(r.returncode, 0, r.stderr)
            finally:
                stdout, stderr = first.communicate(timeout=120)
            self.assertEqual(first.returncode, 0, stdout + stderr)
            r = self.run_script("test", *args)  # the lock went with the first driver
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_two_lanes_train_a_seeds_two_cores_side_by_side(self):
        with tempfile.TemporaryDirectory() as d:
            _, _, start, end, ranks = self.run_phase_timed(d, "transfer", "3101")
            matched, disjoint = "transfer_core_matched_3101.h5", "transfer_core_disjoint_3101.h5"
            self.assertEqual((ranks[matched], ranks[disjoint]), (1, 1))
            self.assertLess(start[disjoint], end[matched])
            self.assertLess(start[matched], end[disjoint])
            # The target's sweeps start from both cores, on both ranks.
            for name in ("transfer_target_3101.h5", "transfer_nulls_3101.h5"):
                self.assertGreaterEqual(start[name], max(end[matched], end[disjoint]))
                self.assertEqual(ranks[name], 2)

    @unittest.skipUnless(EXE, "needs V1SYSID_EXE (the sweep files are parsed by a dry run)")
    def test_the_transfer_sweeps_parse_and_name_their_architectures_by_kind(self):
        sweeps = os.path.join(ANALYSIS, "..", "sweeps", "replication")
        with tempfile.TemporaryDirectory() as d:
            # As the transfer phase runs them: in a folder beside the core checkpoints they name (here stand-ins;
            # a dry run reads no checkpoint), the models named by absolute paths.
            for core in ("core_matched.h5", "core_disjoint.h5"):
                open(os.path.join(d, core), "w").close()
            for name in ("transfer_core", "transfer_target", "transfer_nulls"):
                with open(os.path.join(sweeps, name + ".yaml")) as f:
                    text = f.read().replace("../models/", os.path.abspath(os.path.join(sweeps, "..", "models")) + "/")
                with open(os.path.join(d, name + ".yaml"), "w") as f:
                    f.write(text)
                out = os.path.join(d, name + ".h5")
                r = subprocess.run([EXE, "sweep", os.path.join(d, name + ".yaml"), "--dry-run", "--out", out],
                                   capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                with h5py.File(out, "r") as f:
                    kinds = {v1analysis.text(a) for a in f["trials/architecture"][...]}
                self.assertLessEqual(kinds, set(rp.TRANSFER_KINDS), name)


@unittest.skipUnless(EXE, "needs V1SYSID_EXE (a dry-run development sweep)")
class FreezeTest(unittest.TestCase):
    """analysis/replication_freeze.py: the test-phase sweeps carry the development draw of the lowest validation
    loss per architecture, parse as sweeps, and the freeze refuses an unfinished development phase."""

    TOOL = os.path.join(ANALYSIS, "replication_freeze.py")
    SWEEPS = os.path.join(ANALYSIS, "..", "sweeps")

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.dev = os.path.join(self.dir, "dev.h5")
        r = subprocess.run([EXE, "sweep", os.path.join(self.SWEEPS, "replication", "dev.yaml"), "--dry-run",
                            "--out", self.dev], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # The frozen sweeps name their models relative to sweeps/replication/, as the real ones do.
        os.symlink(os.path.abspath(os.path.join(self.SWEEPS, "models")), os.path.join(self.dir, "models"))
        self.out = os.path.join(self.dir, "replication")
        os.mkdir(self.out)

    def tearDown(self):
        self.tmp.cleanup()

    def freeze(self, *extra):
        return subprocess.run([sys.executable, self.TOOL, self.dev, "--sweeps-dir", self.out, *extra],
                              capture_output=True, text=True)

    def test_frozen_values_are_the_best_development_draw_and_the_sweeps_parse(self):
        r = self.freeze()
        self.assertEqual(r.returncode, 0, r.stderr)
        res = v1analysis.read_results(self.dev)
        arch = np.asarray(res["architecture"]).astype(str)
        loss = np.asarray(res["best_val_loss"], dtype=float)
        with open(os.path.join(self.out, "test.yaml")) as f:
            text = f.read()
        blocks = text.split("  - name: ")[1:]
        self.assertEqual([b.split()[0] for b in blocks], ["roteq_4x8", "cnn_32", "cnn_8"])
        for block in blocks:
            name = block.split()[0]
            rows = np.flatnonzero(arch == name)
            best = rows[np.argmin(loss[rows])]
            for key in ("core.smooth_weight", "core.sparse_weight", "readout.feature_weight"):
                value = repr(float(res["hyperparameters"][key][best]))
                self.assertIn(f"{key.split('.')[1]}: {value}", block, f"{name} {key}")
        self.assertIn("channels: [8, 8, 8]", blocks[2])
        self.assertIn("| roteq_4x8 |", r.stdout)  # the amendment's table
        for name, cells in (("test", 9), ("test_25", 3)):
            r = subprocess.run([EXE, "sweep", os.path.join(self.out, f"{name}.yaml"), "--list"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(len(r.stdout.strip().splitlines()) - 1, cells, r.stdout)
        r = self.freeze()  # frozen once: a second freeze would silently change the settings
        self.assertEqual(r.returncode, 3)
        self.assertIn("--force", r.stderr)

    def test_an_unfinished_development_phase_is_refused(self):
        with h5py.File(self.dev, "r+") as f:
            status = f["trials/status"]
            status[5] = np.array("pending", dtype=status.dtype)
        r = self.freeze()
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("trials [5] are not finished", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.out, "test.yaml")))

    def test_the_architecture_table_matches_dev_yaml(self):
        sys.path.insert(0, ANALYSIS)
        import replication_freeze as rf
        with open(os.path.join(self.SWEEPS, "replication", "dev.yaml")) as f:
            dev = f.read()
        for name, spec in rf.ARCHITECTURES.items():
            self.assertRegex(dev, rf"name: {name}\n\s+model: {re.escape(spec['model'])}\n")
        self.assertIn("readout: " + rf.READOUT % "0.01", dev)
        self.assertIn(f"train: {{max_iterations: {rf.MAX_ITERATIONS}}}", dev)
        self.assertIn("core: {channels: [8, 8, 8]}", dev)

if __name__ == "__main__":
    unittest.main()
