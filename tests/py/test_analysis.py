"""analysis/: the functions of v1analysis.py on inputs whose answers are known in closed form, report.py on a
dry-run sweep (Table 1 against `v1sysid select`) and on a trained tiny model, `v1sysid rf` against finite
differences of `v1sysid predict` and against PyTorch autograd, `v1sysid similarity` against numpy, and
analysis/torch_model.py (factorised export against `predict`; Gaussian export against a numpy bilinear
sampler). Torch-dependent parts are skipped with a message when torch is missing.
"""
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

try:
    import h5py
    H5PY = None
except ImportError as e:  # pragma: no cover
    H5PY = str(e)
try:
    import torch
    TORCH = None
except ImportError as e:  # pragma: no cover
    TORCH = str(e)

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYSIS = os.path.join(HERE, "..", "..", "analysis")
sys.path.insert(0, ANALYSIS)
import v1analysis as va  # noqa: E402
from test_export_torch import MODEL, executable, write_dataset  # noqa: E402


@contextlib.contextmanager
def full_tmpfs(folder):
    """A 64 KiB tmpfs mounted at `folder` (created) and filled by the file `filler`: every write there is ENOSPC.
    Needs root (skip the test otherwise)."""
    os.makedirs(folder)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], check=True)
    try:
        try:
            with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
                while True:
                    f.write(b"x" * 4096)
        except OSError:  # full
            pass
        yield folder
    finally:
        subprocess.run(["umount", "-l", folder], check=False)


MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(*args):
    r = subprocess.run([executable(), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"v1sysid {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def rotation_major(w_nrf):
    """[N, R, F] -> [N, R*F] with c = r*F + f."""
    n, r, f = w_nrf.shape
    return w_nrf.reshape(n, r * f)


class FeatureWeights(unittest.TestCase):
    """Weights built so that energies, groups, counts and signs are known exactly."""

    def setUp(self):
        R, F = 8, 3
        w = np.zeros((4, R, F))
        w[0, 2, 0] = 3.0                     # only feature 0: energy (1, 0, 0)
        w[1, 1, 1], w[1, 5, 1] = 1.0, -1.0   # feature 1, two rotations: energy 2
        w[1, 0, 2] = 1.0                     # feature 2: energy 1 -> (0, 2/3, 1/3)
        w[2, :, 2] = 0.5                     # all rotations of feature 2: 8 * 0.25 = 2
        w[2, 3, 0] = -0.1                    # 0.01 of 2.01 -> below 5 %
        # neuron 3: all zero -> no group
        self.w, self.R, self.F = w, R, F
        self.features = rotation_major(w)

    def test_energy_groups_counts(self):
        e = va.feature_energy(self.features, self.R)
        np.testing.assert_allclose(e[0], [1, 0, 0])
        np.testing.assert_allclose(e[1], [0, 2 / 3, 1 / 3])
        np.testing.assert_allclose(e[2], [0.01 / 2.01, 0, 2 / 2.01])
        self.assertTrue(np.isnan(e[3]).all())
        np.testing.assert_array_equal(va.group_neurons(e), [0, 1, 2, -1])
        np.testing.assert_array_equal(va.features_above(e, 0.05), [1, 2, 1, 0])

    def test_channel_order_is_rotation_major(self):
        # A weight at channel c = r*F + f belongs to feature f: moving it to another rotation keeps the energy.
        f = np.zeros((1, self.R * self.F))
        f[0, 5 * self.F + 2] = 1.0
        np.testing.assert_allclose(va.feature_energy(f, self.R)[0], [0, 0, 1])

    def test_sign_consistency(self):
        c, pos, n = va.sign_consistency(self.features, self.R, rel_tol=0.01)
        # feature 0: +3 (n0), -0.1 (n2: 0.2 of n2's max 0.5, non-zero) -> 1 of 2 positive
        # feature 1: +1, -1 -> 0.5; feature 2: +1 (n1) and eight +0.5 (n2) -> all positive
        np.testing.assert_array_equal(n, [2, 2, 9])
        np.testing.assert_allclose(pos, [0.5, 0.5, 1.0])
        np.testing.assert_allclose(c, [0.5, 0.5, 1.0])
        # A tolerance above 0.2 of the neuron's largest weight drops n2's -0.1 on feature 0.
        c, pos, n = va.sign_consistency(self.features, self.R, rel_tol=0.3)
        self.assertEqual(n[0], 1)
        self.assertEqual(c[0], 1.0)

    def test_strongest_rotation_and_orientation(self):
        # 40 neurons in 2 groups; rotation r_n; true orientation = theta_f - r_n * 45 deg (mod 180) + noise.
        rng = np.random.default_rng(3)
        R, F, N = 8, 2, 40
        w = rng.normal(0, 0.05, (N, R, F))
        groups = np.arange(N) % F
        rot = rng.integers(0, R, N)
        w[np.arange(N), rot, groups] = 2.0
        theta_f = np.array([0.3, 1.9])
        noise = np.radians(rng.uniform(-3, 3, N))
        gt = (theta_f[groups] - rot * 2 * np.pi / R + noise) % np.pi
        features = rotation_major(w)
        g = va.group_neurons(va.feature_energy(features, R))
        np.testing.assert_array_equal(g, groups)
        np.testing.assert_array_equal(va.strongest_rotation(features, R, g), rot)
        res = va.orientation_recovery(features, R, g, gt, direction=-1)
        self.assertLess(res["error_deg"].max(), 6.0)
        self.assertEqual(res["neurons"], N)
        wrong = va.orientation_recovery(features, R, g, gt, direction=+1)
        self.assertGreater(wrong["mean_error_deg"], 20.0)
        # NaN orientations (non-oriented cells) are left out.
        gt2 = gt.copy()
        gt2[:5] = np.nan
        self.assertEqual(va.orientation_recovery(features, R, g, gt2)["neurons"], N - 5)

    def test_axial_error(self):
        np.testing.assert_allclose(va.axial_error_deg([0.0, 0.1, np.pi - 0.1], [np.pi - 0.05, 0.1 + np.pi / 2, 0.1]),
                                   [np.degrees(0.05), 90.0, np.degrees(0.2)], atol=1e-9)


class AdjustedRandIndex(unittest.TestCase):
    def test_known_values(self):
        self.assertAlmostEqual(va.adjusted_rand_index([0, 0, 1, 1], [5, 5, 9, 9]), 1.0)
        self.assertAlmostEqual(va.adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), -0.5)
        # contingency [[2, 0], [1, 1]]: index 1, row sums 1 + 1, columns 3 + 0, expected 2 * 3 / 6 = 1 ->
        # (1 - 1) / (2.5 - 1) = 0
        self.assertAlmostEqual(va.adjusted_rand_index([0, 0, 1, 1], [0, 0, 0, 1]), 0.0)
        # [0,0,1,2] vs [0,0,1,1]: index 1, a 1, b 2, expected 2/6, max 1.5 -> (2/3) / (7/6) = 4/7
        self.assertAlmostEqual(va.adjusted_rand_index([0, 0, 1, 2], ["a", "a", "b", "b"]), 4 / 7)

    def test_chance_is_near_zero(self):
        rng = np.random.default_rng(0)
        values = [va.adjusted_rand_index(rng.integers(0, 5, 2000), rng.integers(0, 4, 2000)) for _ in range(5)]
        self.assertLess(abs(np.mean(values)), 0.01)

    def test_confusion_matrix(self):
        m, g, t = va.confusion_matrix([2, 2, 0, 0, 0], ["x", "y", "y", "y", "x"])
        self.assertEqual(g, [0, 2])
        self.assertEqual(t, ["x", "y"])
        np.testing.assert_array_equal(m, [[1, 2], [1, 1]])


@unittest.skipIf(H5PY is not None, f"h5py not available: {H5PY}")
class ResultsTables(unittest.TestCase):
    def write_results(self, path):
        # Two architectures x two fractions; known best trials and top-5 statistics.
        arch = ["roteq_16x8-16x8-24x8"] * 7 + ["cnn_128_128_256"] * 3 + ["roteq_16x8-16x8-24x8"] * 2
        frac = [1.0] * 10 + [0.5] * 2
        val = [5, 3, np.nan, 4, 1, 2, 6, 9, 8, 7, 3, 2]
        status = ["ok", "ok", "failed", "ok", "ok", "ok", "ok", "ok", "ok", "diverged", "ok", "ok"]
        corr = [0.1, 0.3, np.nan, 0.2, 0.5, 0.4, 0.0, 0.25, 0.3, np.nan, 0.31, 0.33]
        with h5py.File(path, "w") as f:
            t = f.create_group("trials")
            t["architecture"] = np.array(arch, dtype="S64")
            t["status"] = np.array(status, dtype="S16")
            t["best_val_loss"] = np.array(val, dtype=float)
            t["test_correlation"] = np.array(corr, dtype=float)
            t["data_fraction"] = np.array(frac)
            t["hyperparameters/core.smooth_weight"] = np.arange(12) / 10.0
        return corr

    def test_select_rule(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "r.h5")
            corr = self.write_results(path)
            rows = va.select_table(va.read_results(path), 5)
        self.assertEqual([(r["architecture"], r["data_fraction"]) for r in rows],
                         [("roteq_16x8-16x8-24x8", 1.0), ("cnn_128_128_256", 1.0), ("roteq_16x8-16x8-24x8", 0.5)])
        r = rows[0]
        self.assertEqual((r["trials_ok"], r["trials_total"], r["best_trial"]), (6, 7, 4))
        top = np.array([corr[i] for i in (4, 5, 1, 3, 0)])  # val 1, 2, 3, 4, 5
        self.assertAlmostEqual(r["top_mean"], top.mean())
        self.assertAlmostEqual(r["top_sd"], top.std(ddof=1))
        self.assertAlmostEqual(r["best_hyperparameters"]["core.smooth_weight"], 0.4)
        self.assertEqual((rows[1]["best_trial"], rows[1]["trials_ok"], rows[1]["top_count"]), (8, 2, 2))
        self.assertEqual(rows[2]["best_trial"], 11)

    def test_features_and_family(self):
        self.assertEqual(va.last_layer_features("roteq_16x8-16x8-24x8"), 24)
        self.assertEqual(va.last_layer_features("cnn_128_128_256"), 256)
        self.assertEqual(va.last_layer_features("roteq_16"), 16)
        self.assertEqual(va.last_layer_features("roteq", {"core.features": 40.0}), 40)
        self.assertIsNone(va.last_layer_features("gaussian"))
        self.assertEqual(va.family("roteq_16"), "roteq")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "r.h5")
            self.write_results(path)
            res = va.read_results(path)
            pts = va.features_vs_loss(res, 5)
            self.assertEqual(sorted((p["features"], p["best_val_loss"]) for p in pts), [(24, 1.0), (256, 8.0)])
            curves = va.correlation_vs_fraction(res, 5)
            self.assertEqual([c[0] for c in curves["roteq_16x8-16x8-24x8"]], [0.5, 1.0])
            # A results file with trials/config (format 3): the feature counts come from the stored configs, not
            # from the architecture names.
            with h5py.File(path, "a") as f:
                arch = [va.text(a) for a in f["trials/architecture"][...]]
                f["trials/config"] = np.array(["core: {kind: roteq, features: [8, 8, 12], rotations: 8}\n"
                                               if a.startswith("roteq") else "core: {kind: cnn, channels: [8, 64]}\n"
                                               for a in arch], dtype="S")
            pts = va.features_vs_loss(va.read_results(path), 5)
            self.assertEqual(sorted((p["features"], p["best_val_loss"]) for p in pts), [(12, 1.0), (64, 8.0)])
            self.assertAlmostEqual(curves["roteq_16x8-16x8-24x8"][0][1], 0.33)
            self.assertEqual([p["top_criterion"] for p in pts if p["features"] == 12], [[1.0, 2.0, 3.0, 4.0, 5.0]])
            # A Lurz-schedule group (finite best_val_correlation in each ok row) is drawn by its own criterion:
            # the correlation, highest first, not the loss.
            with h5py.File(path, "a") as f:
                f["trials/best_val_correlation"] = np.array([np.nan] * 7 + [0.2, 0.6, np.nan, np.nan, np.nan])
            pts = {p["features"]: p for p in va.features_vs_loss(va.read_results(path), 5)}
            self.assertEqual((pts[64]["ranked_by"], pts[64]["best_criterion"], pts[64]["top_criterion"]),
                             ("validation correlation", 0.6, [0.6, 0.2]))
            self.assertEqual((pts[12]["ranked_by"], pts[12]["best_criterion"]), ("validation loss", 1.0))

    def test_damaged_row_is_left_out_like_select_does(self):
        """A finished row whose values changed after the sweep wrote it fails trials/row_checksum: read_results
        warns with its trial id and marks it "damaged", so select_table never picks it (as `v1sysid select`)."""
        with tempfile.TemporaryDirectory() as tmp:
            results = os.path.join(tmp, "dry.h5")
            env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            subprocess.run([executable(), "sweep", os.path.join(HERE, "..", "..", "sweeps", "dry_run.yaml"),
                            "--out", results], check=True, capture_output=True, env=env)
            with h5py.File(results, "r") as f:
                self.assertTrue((va.row_checksums(f["trials"]) == f["trials/row_checksum"][...]).all())
            best = va.select_table(va.read_results(results), 5)[0]["best_trial"]
            damaged = 1 if best == 0 else 0  # group 0 is trials 0..7; zero a loss that is not the best
            with h5py.File(results, "r+") as f:
                f["trials/best_val_loss"][damaged] = 0.0
            with self.assertWarnsRegex(UserWarning, f"trial {damaged}: its row fails its checksum"):
                res = va.read_results(results)
            self.assertEqual(res["status"][damaged], "damaged")
            rows = va.select_table(res, 5)
            self.assertEqual((rows[0]["best_trial"], rows[0]["trials_ok"]), (best, 7))
            csv = os.path.join(tmp, "sel.csv")
            run("select", results, "--csv", csv)
            expected = np.genfromtxt(csv, delimiter=",", names=True, dtype=None, encoding="utf-8")
            self.assertEqual(int(expected[0]["best_trial"]), best)
            self.assertEqual(int(expected[0]["trials_ok"]), 7)

    def dry_run_results(self, tmp):
        """A dry-run sweep of sweeps/dry_run.yaml with 4 draws (24 trials of about 0.1 s): (sweep file, results)."""
        results, sweep = os.path.join(tmp, "dry.h5"), os.path.join(tmp, "dry.yaml")
        with open(os.path.join(HERE, "..", "..", "sweeps", "dry_run.yaml")) as f:
            text = f.read()
        with open(sweep, "w") as f:
            f.write(text.replace("draws: 8", "draws: 4"))
        subprocess.run([executable(), "sweep", sweep, "--out", results], check=True, capture_output=True, env=MPI_ENV)
        return sweep, results

    def test_lurz_trials_rank_by_validation_correlation_everywhere(self):
        """Lurz-schedule trials (a finite trials/best_val_correlation in every ok row of a group) are ranked by
        validation correlation, highest first, by `select`, `status` and select_table alike, also where the
        validation losses order them the other way; the checksums the Python reader computes over the format-5
        column are the ones `select` verifies."""
        with tempfile.TemporaryDirectory() as tmp:
            _, results = self.dry_run_results(tmp)
            with h5py.File(results, "r+") as f:
                t = f["trials"]
                loss = t["best_val_loss"][...]
                group = [i for i in range(len(loss)) if t["architecture"][i] == t["architecture"][0]
                         and t["data_fraction"][i] == t["data_fraction"][0]]
                corr = np.full(len(loss), np.nan)
                corr[group] = loss[group]  # the worst loss has the best correlation
                t["best_val_correlation"][...] = corr
                t["row_checksum"][...] = va.row_checksums(t)
            expected = max(group, key=lambda i: corr[i])
            self.assertNotEqual(expected, min(group, key=lambda i: loss[i]))
            csv = os.path.join(tmp, "sel.csv")
            r = subprocess.run([executable(), "select", results, "--csv", csv], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("checksum", r.stderr)
            table = np.genfromtxt(csv, delimiter=",", names=True, dtype=None, encoding="utf-8")
            self.assertEqual((int(table[0]["best_trial"]), table[0]["ranked_by"]), (expected, "validation correlation"))
            self.assertAlmostEqual(float(table[0]["best_val_correlation"]), corr[expected], places=8)
            self.assertEqual(table[1]["ranked_by"], "validation loss")
            status = json.loads(run("status", results, "--json"))
            self.assertEqual((status["best"][0]["trial"], status["best"][0]["ranked_by"]),
                             (expected, "validation correlation"))
            rows = va.select_table(va.read_results(results), 5)
            self.assertEqual((rows[0]["best_trial"], rows[0]["ranked_by"]), (expected, "validation correlation"))
            self.assertEqual(rows[0]["ranked"][:2], sorted(group, key=lambda i: -corr[i])[:2])
            self.assertIn("| validation correlation |", va.table_markdown(rows))
            # A group where one ok trial has no correlation (finished before format 5) falls back to the loss.
            with h5py.File(results, "r+") as f:
                t = f["trials"]
                t["best_val_correlation"][group[0]] = np.nan
                t["row_checksum"][...] = va.row_checksums(t)
            r = subprocess.run([executable(), "select", results, "--csv", csv, "--force"], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("1 of 4 ok trials have no validation correlation", r.stderr)
            table = np.genfromtxt(csv, delimiter=",", names=True, dtype=None, encoding="utf-8")
            self.assertEqual((int(table[0]["best_trial"]), table[0]["ranked_by"]),
                             (min(group, key=lambda i: loss[i]), "validation loss"))
            self.assertEqual(va.select_table(va.read_results(results), 5)[0]["ranked_by"], "validation loss")

    def test_format_3_to_5_files_are_upgraded_on_resume_keeping_every_row(self):
        """A results file of format 5 (no trials/val_correlation_curve), 4 (nor trials/best_val_correlation) or 3
        (nor trials/heartbeat) is upgraded in place when the sweep resumes it: the columns are added as NaN, every
        verified finished row keeps its values and gets a checksum over the new columns, and a row damaged before
        the upgrade stays damaged and is the one row run again."""
        for version, stopped in ((5, False), (4, False), (3, False), (4, True), (5, True)):
            with self.subTest(version=version, stopped=stopped), tempfile.TemporaryDirectory() as tmp:
                sweep, results = self.dry_run_results(tmp)
                with h5py.File(results, "r+") as f:
                    t = f["trials"]
                    width = t["val_curve"].shape[1]
                    del t["val_correlation_curve"]
                    if version <= 4:
                        del t["best_val_correlation"]
                    if version == 3:
                        del t["heartbeat"]
                    f.attrs["format_version"] = version
                    t["row_checksum"][...] = va.row_checksums(t)  # the checksums that format writes
                    if stopped:  # an upgrade that added the columns and rewrote half the checksums, then died
                        n = t["status"].shape[0]
                        if version <= 4:
                            t["best_val_correlation"] = np.full(n, np.nan)
                        t["val_correlation_curve"] = np.full((n, width), np.nan)
                        t["row_checksum"][::2] = va.row_checksums(t)[::2]
                    t["best_val_loss"][5] += 1.0  # damaged after it was written
                    before = {name: t[name][...] for name in ("best_val_loss", "test_correlation", "wall_seconds")}
                with self.assertWarnsRegex(UserWarning, "trial 5: its row fails its checksum") as caught:
                    va.read_results(results)
                self.assertEqual(len(caught.warnings), 1)  # that row only, also midway through an upgrade
                r = subprocess.run([executable(), "select", results], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)  # an old file is read as it is
                self.assertEqual(r.stderr.count("its row fails its checksum"), 1, r.stderr)
                self.assertIn("trial 5: its row fails its checksum", r.stderr)
                r = subprocess.run([executable(), "sweep", sweep, "--out", results], capture_output=True, text=True,
                                   env=MPI_ENV)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                added = ("its columns were there: an earlier upgrade stopped midway" if stopped else
                         "added trials/best_val_correlation, trials/val_correlation_curve, trials/heartbeat"
                         if version == 3 else
                         "added trials/best_val_correlation, trials/val_correlation_curve" if version == 4 else
                         "added trials/val_correlation_curve")
                self.assertIn(f"from results format {version} to 6 ({added})", r.stderr)
                self.assertIn("1 to run", r.stdout + r.stderr)
                with h5py.File(results, "r") as f:
                    t = f["trials"]
                    self.assertEqual(f.attrs["format_version"], 6)
                    self.assertTrue(np.isnan(t["best_val_correlation"][...]).all())
                    self.assertEqual(t["val_correlation_curve"].shape, t["val_curve"].shape)
                    self.assertTrue(np.isnan(t["val_correlation_curve"][...]).all())
                    self.assertTrue((va.row_checksums(t) == t["row_checksum"][...]).all())
                    for name, old in before.items():
                        keep = np.arange(len(old)) != 5
                        np.testing.assert_array_equal(t[name][...][keep], old[keep], err_msg=name)
                    self.assertNotEqual(t["best_val_loss"][5], before["best_val_loss"][5])  # run again

    def test_report_on_dry_run_matches_select(self):
        with tempfile.TemporaryDirectory() as tmp:
            results = os.path.join(tmp, "dry.h5")
            env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            subprocess.run([executable(), "sweep", os.path.join(HERE, "..", "..", "sweeps", "dry_run.yaml"),
                            "--out", results], check=True, capture_output=True, env=env)
            csv = os.path.join(tmp, "sel.csv")
            run("select", results, "--csv", csv)
            expected = np.genfromtxt(csv, delimiter=",", names=True, dtype=None, encoding="utf-8")
            rows = va.select_table(va.read_results(results), 5)
            self.assertEqual(len(rows), len(expected))
            for r, e in zip(rows, expected):
                self.assertEqual(r["architecture"], e["architecture"])
                self.assertEqual(r["best_trial"], e["best_trial"])
                self.assertAlmostEqual(r["top_mean"], e["top_mean_test_correlation"], places=8)
                self.assertAlmostEqual(r["top_sd"], e["top_sd_test_correlation"], places=8)
            out = os.path.join(tmp, "report")
            subprocess.run([sys.executable, os.path.join(ANALYSIS, "report.py"), results, "--out", out], check=True,
                           capture_output=True)
            with open(os.path.join(out, "report.md")) as f:
                text = f.read()
            self.assertIn(f"{rows[0]['top_mean']:.3f} +- {rows[0]['top_sd']:.3f}", text)
            for png in ("fig2_features.png", "fig3_data_fraction.png"):
                with open(os.path.join(out, png), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertIn("Figs. 4-6", text)  # said why they are missing


@unittest.skipIf(H5PY is not None, f"h5py not available: {H5PY}")
class TrainedModel(unittest.TestCase):
    """One tiny model trained with the CLI, shared by the rf / similarity / report / torch checks."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cls.data = os.path.join(d, "tiny.h5")
        cls.images, cls.tiers = write_dataset(cls.data, np.random.default_rng(4))
        with h5py.File(cls.data, "a") as f:
            f["gt/cell_type"] = np.array(["simple", "complex"] * 3, dtype="S")
            f["gt/orientation"] = np.array([0.1, 0.5, 1.0, 1.5, 2.0, np.nan])
        model = os.path.join(d, "model.yaml")
        with open(model, "w") as f:
            f.write(MODEL)
        run("train", model, "--data", cls.data, "--out", os.path.join(d, "run"), "--quiet")
        cls.checkpoint = os.path.join(d, "run", "checkpoint.h5")
        with h5py.File(cls.checkpoint, "r") as f:
            cls.image_mean = float(f["export/preprocessing/image_mean"][()])
            cls.H, cls.W = int(f.attrs["height"]), int(f.attrs["width"])
            cls.N = int(f.attrs["n_neurons"])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def rf(self, *extra):
        out = os.path.join(self.tmp.name, "rf_%d.h5" % len(extra))
        run("rf", "--checkpoint", self.checkpoint, "--out", out, "--force", *extra)
        with h5py.File(out, "r") as f:
            return f["rf"][...].astype(np.float64), f["neurons"][...], f.attrs

    def predict_images(self, images, name):
        """v1sysid predict on a dataset whose test tier is `images` [T, H, W] (grey levels)."""
        path = os.path.join(self.tmp.name, name + ".h5")
        T = len(images)
        filler = np.full((2, 1, self.H, self.W), self.image_mean, dtype=np.float32)
        with h5py.File(path, "w") as f:
            f["images"] = np.concatenate([filler, filler, images[:, None].astype(np.float32)])
            f["responses"] = np.ones((4 + T, self.N), dtype=np.float32)
            f["tiers"] = np.array(["train"] * 2 + ["validation"] * 2 + ["test"] * T, dtype="S")
            f["item_info/frame_image_id"] = np.arange(4 + T, dtype=np.int64)
            f["neurons/unit_ids"] = np.arange(self.N, dtype=np.int64)
        pred = os.path.join(self.tmp.name, name + "_pred.h5")
        run("predict", "--checkpoint", self.checkpoint, "--data", path, "--tier", "test", "--out", pred, "--force")
        with h5py.File(pred, "r") as f:
            return f["predictions"][...].astype(np.float64), path

    def test_rf_matches_finite_differences_of_predict(self):
        rf, neurons, attrs = self.rf("--neurons", 2, 0, 5, "--batch", 2)
        np.testing.assert_array_equal(neurons, [2, 0, 5])
        self.assertEqual(rf.shape, (3, self.H, self.W))
        # Central differences of the stored-unit predictions at the 4 pixels with the largest |rf| per neuron.
        eps = 1.0  # grey level; curvature error ~ eps^2 * f''' is far below the float32 predictions' noise
        images, index = [], []
        for k in range(3):
            for p in np.argsort(-np.abs(rf[k]).ravel())[:4]:
                for sign in (1, -1):
                    img = np.full((self.H, self.W), self.image_mean)
                    img.ravel()[p] += sign * eps
                    images.append(img)
                index.append((k, p))
        pred, _ = self.predict_images(np.array(images), "fd")
        worst = 0.0
        for j, (k, p) in enumerate(index):
            n = neurons[k]
            fd = (pred[2 * j, n] - pred[2 * j + 1, n]) / (2 * eps)
            worst = max(worst, abs(fd - rf[k].ravel()[p]) / abs(rf[k].ravel()[p]))
        print(f"rf vs finite differences of predict: max relative error {worst:.2e}")
        self.assertLess(worst, 0.02)

    @unittest.skipIf(TORCH is not None, f"PyTorch not available: {TORCH}")
    def test_rf_matches_torch_autograd(self):
        from torch_model import load_model
        rf, neurons, _ = self.rf()
        model = load_model(self.checkpoint)
        x = torch.full((1, 1, self.H, self.W), self.image_mean, dtype=torch.float64, requires_grad=True)
        y = model(x)
        worst = 0.0
        for n in range(self.N):
            (g,) = torch.autograd.grad(y[0, n], x, retain_graph=True)
            g = g[0, 0].numpy()
            worst = max(worst, np.abs(g - rf[n]).max() / np.abs(g).max())
        print(f"rf vs torch autograd: max error {worst:.2e} of the largest |gradient|")
        self.assertLess(worst, 1e-3)

    def test_similarity_matches_numpy(self):
        # The dataset's test tier repeats 10 images 4 times: similarity takes each image id once.
        out = os.path.join(self.tmp.name, "rsm.h5")
        run("similarity", "--checkpoint", self.checkpoint, "--images", self.data, "--out", out, "--block", 7,
            "--force")
        with h5py.File(out, "r") as f:
            rsm = f["rsm"][...].astype(np.float64)
            ids = f["image_ids"][...]
        with h5py.File(self.data, "r") as f:
            all_ids = f["item_info/frame_image_id"][...]
            images = f["images"][...][:, 0]
        first = [int(np.flatnonzero(all_ids == i)[0]) for i in ids]
        self.assertEqual(len(ids), len(np.unique(all_ids)))
        pred, _ = self.predict_images(images[first], "sim")
        expected = np.corrcoef(pred)
        self.assertEqual(rsm.shape, expected.shape)
        err = np.abs(rsm - expected).max()
        print(f"similarity vs numpy corrcoef over {len(ids)} images: max abs error {err:.2e}")
        self.assertLess(err, 1e-4)
        self.assertGreater(expected.std(), 0.01)  # not a degenerate all-equal matrix

    def test_report_with_checkpoint_and_ground_truth(self):
        out = os.path.join(self.tmp.name, "report")
        results = os.path.join(self.tmp.name, "r.h5")
        with h5py.File(results, "w") as f:  # one finished trial, so Table 1 has a row
            t = f.create_group("trials")
            t["architecture"] = np.array(["cnn_3"], dtype="S64")
            t["status"] = np.array(["ok"], dtype="S16")
            t["best_val_loss"] = np.array([1.0])
            t["test_correlation"] = np.array([0.5])
            t["data_fraction"] = np.array([1.0])
        subprocess.run([sys.executable, os.path.join(ANALYSIS, "report.py"), results, "--checkpoint", self.checkpoint,
                        "--data", self.data, "--exe", executable(), "--out", out], check=True, capture_output=True)
        with open(os.path.join(out, "report.md")) as f:
            text = f.read()
        ro = va.load_readout(self.checkpoint)
        groups = va.group_neurons(va.feature_energy(ro["features"], ro["rotations"]))
        ari = va.adjusted_rand_index(groups, ["simple", "complex"] * 3)
        self.assertIn(f"gt/cell_type: **{ari:.3f}**", text)
        self.assertIn("not a rotation-equivariant core", text)  # orientation needs rotations
        for png in ("fig4_feature_weights.png", "fig5_sign_consistency.png", "fig6_receptive_fields.png",
                    "dv1_confusion.png"):
            with open(os.path.join(out, png), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", png)

    def checkpoint_dir_report(self, name, edit=None, architectures=("cnn_3",) * 3, val_correlations=None):
        """report.py --checkpoint-dir on a results file of three trials whose checkpoints trial_<id>.h5 are
        copies of the trained model carrying each trial's best validation loss (trial 1 is the best);
        edit(folder) changes the folder first; val_correlations, when given, is trials/best_val_correlation
        (Lurz's schedule). Returns (report.md text, stderr, folder)."""
        import shutil
        tmp = os.path.join(self.tmp.name, name)
        folder = os.path.join(tmp, "checkpoints")
        os.makedirs(folder)
        results = os.path.join(tmp, "r.h5")
        losses = [3.0, 1.0, 2.0]
        with h5py.File(results, "w") as f:
            t = f.create_group("trials")
            t["trial_id"] = np.arange(3, dtype=np.int64)
            t["architecture"] = np.array(architectures, dtype="S64")
            t["status"] = np.array(["ok"] * 3, dtype="S16")
            t["best_val_loss"] = np.array(losses)
            if val_correlations is not None:
                t["best_val_correlation"] = np.array(val_correlations, dtype=float)
            t["test_correlation"] = np.array([0.1, 0.5, 0.3])
            t["data_fraction"] = np.ones(3)
        for trial, loss in enumerate(losses):
            path = os.path.join(folder, f"trial_{trial}.h5")
            shutil.copy(self.checkpoint, path)
            with h5py.File(path, "a") as f:
                f["training"].attrs["best_val_loss"] = loss
        if edit:
            edit(folder)
        out = os.path.join(tmp, "report")
        r = subprocess.run([sys.executable, os.path.join(ANALYSIS, "report.py"), results, "--checkpoint-dir", folder,
                            "--exe", executable(), "--out", out], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "report.md")) as f:
            return f.read(), r.stderr, folder

    def test_report_maps_checkpoint_files_to_their_trials(self):
        # trial_<id>.h5 is trial <id>: not trial 5 (the digit of ".h5") for every file.
        text, _, folder = self.checkpoint_dir_report("by_name")
        self.assertIn(f"## Feature weights of `{os.path.join(folder, 'trial_1.h5')}`", text)

    def test_report_analyses_the_best_lurz_group_by_validation_correlation(self):
        # Three architectures of one trial each, trained on Lurz's schedule: the analysed checkpoint is the group
        # with the highest validation correlation (trial 2), not the one with the lowest validation loss (trial 1).
        text, _, folder = self.checkpoint_dir_report("lurz_groups", architectures=("cnn_3", "cnn_4", "cnn_5"),
                                                     val_correlations=[0.30, 0.20, 0.40])
        self.assertIn(f"## Feature weights of `{os.path.join(folder, 'trial_2.h5')}`", text)
        # One group without a validation correlation (Ecker's schedule): every group is compared by the loss.
        text, _, folder = self.checkpoint_dir_report("mixed_groups", architectures=("cnn_3", "cnn_4", "cnn_5"),
                                                     val_correlations=[0.30, 0.20, np.nan])
        self.assertIn(f"## Feature weights of `{os.path.join(folder, 'trial_1.h5')}`", text)

    def test_report_refuses_a_checkpoint_of_another_trial(self):
        def swap_losses(folder):  # the file named trial_1.h5 holds another training run
            with h5py.File(os.path.join(folder, "trial_1.h5"), "a") as f:
                f["training"].attrs["best_val_loss"] = 2.5
        text, err, _ = self.checkpoint_dir_report("other_loss", swap_losses)
        self.assertNotIn("## Feature weights of", text)
        self.assertIn("not that trial's model", text)
        self.assertIn("trial_1.h5", err)

        def stored_id(folder):  # a trial id stored in the checkpoint decides
            with h5py.File(os.path.join(folder, "trial_1.h5"), "a") as f:
                f.attrs["trial_id"] = np.int64(2)
        text, _, _ = self.checkpoint_dir_report("other_id", stored_id)
        self.assertNotIn("## Feature weights of", text)
        self.assertIn("stores trial id 2, not 1", text)


@unittest.skipIf(H5PY is not None, f"h5py not available: {H5PY}")
class ReportOnAFullDisk(unittest.TestCase):
    """report.py writes every file through a temporary name: a full disk (or a file size limit) ends with one
    line naming the file and a non-zero exit, no traceback, no report.md and no temporaries."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.results = os.path.join(cls.tmp.name, "dry.h5")
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        subprocess.run([executable(), "sweep", os.path.join(HERE, "..", "..", "sweeps", "dry_run.yaml"),
                        "--out", cls.results], check=True, capture_output=True, env=env)
        # matplotlib writes its font cache on its first start; on a new machine that write would meet the size
        # limit of the test before report.py's own files do. A cache folder of this class, filled once here.
        cls.mpl = os.path.join(cls.tmp.name, "mplconfig")
        subprocess.run([sys.executable, "-c", "import matplotlib.pyplot"], check=True,
                       env=dict(os.environ, MPLCONFIGDIR=cls.mpl))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def report(self, out, preexec_fn=None, mplconfig=None):
        return subprocess.run([sys.executable, os.path.join(ANALYSIS, "report.py"), self.results, "--out", out],
                              capture_output=True, text=True, preexec_fn=preexec_fn,
                              env=dict(os.environ, MPLCONFIGDIR=mplconfig or self.mpl))

    def test_matplotlib_that_cannot_write_its_cache_is_a_clean_error(self):
        # Before, report.py died in `import matplotlib.pyplot` with a traceback (exit 1) when the font cache could
        # not be written (a full disk, a file size limit) on a machine where matplotlib had never run.
        import resource
        out = os.path.join(self.tmp.name, "no_cache")
        os.makedirs(out)
        r = self.report(out, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)),
                        mplconfig=os.path.join(self.tmp.name, "empty_mplconfig"))
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertRegex(r.stderr.strip().splitlines()[-1], r"^report.py: error: matplotlib could not start: .*"
                         r"empty_mplconfig.*File too large")

    def assert_clean_failure(self, r, out, code, cause):
        self.assertEqual(r.returncode, code, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        self.assertRegex(last, rf"^report.py: error: {cause} while writing {out}/\S+ ")
        self.assertFalse(os.path.exists(os.path.join(out, "report.md")))
        self.assertEqual([n for n in os.listdir(out) if ".partial" in n], [])

    def test_file_size_limit(self):
        import resource
        out = os.path.join(self.tmp.name, "limited")
        os.makedirs(out)
        with open(os.path.join(out, "report.md"), "w") as f:  # an earlier run's report must not pass for this one
            f.write("stale\n")
        r = self.report(out, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
        self.assert_clean_failure(r, out, 3, "failed")
        self.assertIn("File too large", r.stderr)

    @unittest.skipIf(not hasattr(os, "geteuid") or os.geteuid() != 0, "mounting a small tmpfs needs root")
    def test_full_tmpfs(self):
        with full_tmpfs(os.path.join(self.tmp.name, "disk")) as disk:
            r = self.report(os.path.join(disk, "report"))
            self.assert_clean_failure(r, os.path.join(disk, "report"), 7, "disk full")


@unittest.skipIf(TORCH is not None or H5PY is not None, f"PyTorch / h5py not available: {TORCH or H5PY}")
class GaussianExport(unittest.TestCase):
    """torch_model's Gaussian readout against a numpy bilinear sampler with align_corners semantics."""

    def test_gaussian_readout(self):
        from torch_model import load_model
        rng = np.random.default_rng(1)
        H, W, C, N = 6, 9, 2, 4
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "g.h5")
            with h5py.File(path, "w") as f:
                e = f.create_group("export")
                e.attrs["num_layers"] = 1
                l0 = e.create_group("layer0")
                l0["weight"] = rng.normal(size=(C, 1, 3, 3))
                l0.attrs["padding"] = "same"
                l0.attrs["nonlinearity"] = "elu"
                l0.attrs["groups"] = 1  # no bn_* datasets: no batch norm after this conv
                r = e.create_group("readout")
                mu = np.array([[-1.0, -1.0], [1.0, 1.0], [0.3, -0.2], [-0.55, 0.8]])
                r["mu"] = mu
                r["sigma"] = rng.normal(size=(N, 2, 2))
                r["features"] = rng.normal(size=(N, C))
                r["bias"] = rng.normal(size=N)
                r.attrs["kind"] = "gaussian"
                r.attrs["output_nonlinearity"] = "elu_plus_one"
                p = e.create_group("preprocessing")
                p["image_mean"] = 10.0
                p["image_std"] = 2.0
                p["response_std"] = np.array([1.0, 2.0, 0.5, 3.0])
                weight, features, bias = l0["weight"][...], r["features"][...], r["bias"][...]
            model = load_model(path)
            images = rng.normal(10, 2, size=(3, H, W))
            got = model(torch.from_numpy(images)).detach().numpy()
        # numpy reference
        x = (images - 10.0) / 2.0
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
        core = np.zeros((3, C, H, W))
        for c in range(C):
            for dy in range(3):
                for dx in range(3):
                    core[:, c] += weight[c, 0, dy, dx] * padded[:, dy:dy + H, dx:dx + W]
        core = np.where(core > 0, core, np.expm1(core))
        expected = np.zeros((3, N))
        for n in range(N):
            px, py = (mu[n, 0] + 1) / 2 * (W - 1), (mu[n, 1] + 1) / 2 * (H - 1)
            x0, y0 = min(int(math.floor(px)), W - 2), min(int(math.floor(py)), H - 2)
            ax, ay = px - x0, py - y0
            sample = ((1 - ax) * (1 - ay) * core[:, :, y0, x0] + ax * (1 - ay) * core[:, :, y0, x0 + 1] +
                      (1 - ax) * ay * core[:, :, y0 + 1, x0] + ax * ay * core[:, :, y0 + 1, x0 + 1])
            h = sample @ features[n] + bias[n]
            expected[:, n] = np.where(h > 0, h, np.expm1(h)) + 1
        expected *= np.array([1.0, 2.0, 0.5, 3.0])
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@unittest.skipIf(TORCH is not None or H5PY is not None, f"PyTorch / h5py not available: {TORCH or H5PY}")
class MultiReadoutExport(unittest.TestCase):
    """A model trained on several datasets exports export/readouts/<key>/ (docs/formats.md): torch_model and
    v1analysis pick the readout by data key, with that readout's response scales, and refuse to guess."""

    def write(self, path, rng, multi):
        keys, n = ["left", "right"], {"left": 3, "right": 4}
        with h5py.File(path, "w") as f:
            e = f.create_group("export")
            e.attrs["num_layers"] = 1
            l0 = e.create_group("layer0")
            l0["weight"] = rng.normal(size=(2, 1, 3, 3))
            l0.attrs["padding"] = "same"
            l0.attrs["nonlinearity"] = "elu"
            l0.attrs["groups"] = 1
            pre = e.create_group("preprocessing")  # readout 0's, as v1sysid writes it
            pre["image_mean"], pre["image_std"] = 10.0, 2.0
            pre["response_std"] = np.arange(1.0, 1.0 + n["left"])
            for k in keys:
                g = e.create_group(f"readouts/{k}" if multi else "readout")
                g["mu"] = rng.uniform(-0.9, 0.9, size=(n[k], 2))
                g["sigma"] = rng.normal(size=(n[k], 2, 2))
                g["features"] = rng.normal(size=(n[k], 2))
                g["bias"] = rng.normal(size=n[k])
                g.attrs["kind"] = "gaussian"
                g.attrs["output_nonlinearity"] = "elu_plus_one"
                p = f.create_group(f"readouts/{k}/preprocessing")
                p["image_mean"], p["image_std"] = 10.0, 2.0
                p["response_std"] = np.arange(1.0, 1.0 + n[k]) * (1 if k == "left" else 10)
                if not multi:
                    break
            if multi:
                e.attrs["data_keys"] = ",".join(keys)
        return n

    def test_readout_by_data_key(self):
        from torch_model import load_model
        rng = np.random.default_rng(3)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "multi.h5")
            n = self.write(path, rng, multi=True)
            images = torch.from_numpy(rng.normal(10, 2, size=(2, 5, 6)))
            right = load_model(path, data_key="right")
            left = load_model(path, data_key="left")
            y_right, y_left = right(images), left(images)
            self.assertEqual(tuple(y_right.shape), (2, n["right"]))
            self.assertEqual(tuple(y_left.shape), (2, n["left"]))
            # The response scales are the readout's own: right's are 10 x 1..4.
            np.testing.assert_allclose(right.response_std.numpy(), 10 * np.arange(1.0, 5.0))
            np.testing.assert_allclose((right(images) / right.response_std).detach().numpy(),
                                       right(images, stored_units=False).detach().numpy(), rtol=1e-12)
            ro = va.load_readout(path, "right")
            self.assertEqual(ro["features"].shape, (n["right"], 2))
            np.testing.assert_allclose(ro["response_std"], 10 * np.arange(1.0, 5.0))
            for call in (lambda: load_model(path), lambda: va.load_readout(path)):
                with self.assertRaisesRegex(ValueError, "data keys left, right"):
                    call()
            with self.assertRaisesRegex(ValueError, "no readout for data key 'middle'"):
                load_model(path, data_key="middle")
            single = os.path.join(tmp, "single.h5")
            self.write(single, rng, multi=False)
            self.assertEqual(load_model(single)(images).shape[1], n["left"])
            with self.assertRaisesRegex(ValueError, "single readout"):
                va.load_readout(single, "left")


if __name__ == "__main__":
    unittest.main()


class BenchCompare(unittest.TestCase):
    """analysis/bench_compare.sh with several builds: each round runs every build and the peer once, and the
    table gives each build's ratio to the peer and to the first build (median and range over the rounds)."""

    def test_several_builds_are_interleaved_and_compared(self):
        with tempfile.TemporaryDirectory() as d:
            order = os.path.join(d, "order.txt")

            def row(peer, train, infer):
                return json.dumps({"peer": peer, "model": "cnn", "neurons": 6, "batch": 2, "height": 4, "width": 5,
                                   "threads": 2, "train_images_per_s": train, "infer_images_per_s": infer,
                                   "train_gflop_per_s": 1, "infer_gflop_per_s": 2, "train_gflop_per_image": 0.5,
                                   "infer_gflop_per_image": 0.25})

            def build(name, train, infer):  # a v1sysid stand-in: a progress line, then the JSON line
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    f.write(f"#!/bin/sh\necho {name} >> {order}\necho progress\necho '{row('v1sysid-' + name, train, infer)}'\n")
                os.chmod(path, 0o755)
                return path

            peer = os.path.join(d, "peer.py")
            with open(peer, "w") as f:
                f.write(f"open({order!r}, 'a').write('peer\\n')\nprint({row('torch-2', 5, 20)!r})\n")
            serial, openmp = build("serial", 10, 30), build("openmp", 15, 60)
            script = os.path.join(ANALYSIS, "bench_compare.sh")
            r = subprocess.run(["bash", script, "--repeats", "2", "--v1sysid", "serial=" + serial,
                                "--v1sysid", "openmp=" + openmp, "--peer", peer, "--", "--model", "cnn"],
                               capture_output=True, text=True, cwd=d)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(order) as f:
                self.assertEqual(f.read().split(), ["serial", "openmp", "peer"] * 2)
            lines = {}
            for line in r.stdout.splitlines():  # the table row of each build (its first line)
                if line.split():
                    lines.setdefault(line.split()[0], line.split())
            # serial 10 / 30 img/s, openmp 15 / 60, torch 5 / 20: ratios to torch 2.00 / 1.50 and 3.00 / 3.00,
            # openmp to serial 1.50 / 2.00.
            self.assertEqual(lines["serial"][1:5], ["10.00", "30.00", "2.00", "(2.00-2.00)"])
            self.assertEqual(lines["openmp"][1:3], ["15.00", "60.00"])
            self.assertEqual(lines["openmp"][3::2], ["3.00", "3.00", "1.50", "2.00"])
            # Two builds without labels cannot be told apart in the table.
            r = subprocess.run(["bash", script, "--v1sysid", serial, "--v1sysid", openmp, "--peer", peer],
                               capture_output=True, text=True, cwd=d)
            self.assertEqual(r.returncode, 2)
            self.assertIn("LABEL=", r.stderr)
