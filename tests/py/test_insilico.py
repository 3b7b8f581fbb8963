"""analysis/insilico.py: the grating experiments and their measures, and a whole `tuning` run on a tiny digital V1.

The measures are checked on synthetic curves; the run checks the experiment against the simulator's own
ground truth: measured on the true neurons (`simulate --rates-for`), the preferred orientation of gratings must be
the cells' gt/orientation (so the grating's orientation convention is the simulator's), and the cells with a
true surround modulator must show more surround suppression than the others. The model is a few training steps
only: its scores are written, not judged. The run needs V1SYSID_EXE.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYSIS = os.path.join(HERE, "..", "..", "analysis")
sys.path.insert(0, ANALYSIS)
import insilico  # noqa: E402

EXE = os.environ.get("V1SYSID_EXE", "")
SOURCE = os.path.join(HERE, "..", "..")


class Measures(unittest.TestCase):
    def test_preferred_orientation_is_the_doubled_angle_average(self):
        thetas = np.arange(12) * np.pi / 12
        curves = np.stack([np.cos(thetas - 0.7) ** 8, np.ones(12)])  # tuned at 0.7 rad; untuned
        pref, osi = insilico.preferred_orientation(curves, thetas)
        self.assertAlmostEqual(pref[0], 0.7, places=6)
        self.assertGreater(osi[0], 0.5)
        self.assertAlmostEqual(osi[1], 0.0, places=12)

    def test_half_point_interpolates_and_is_nan_for_a_flat_curve(self):
        x = np.array([0.0, 0.1, 0.2, 0.4])
        self.assertAlmostEqual(insilico.half_point(x, np.array([0.0, 1.0, 3.0, 4.0])), 0.15)
        self.assertTrue(np.isnan(insilico.half_point(x, np.zeros(4))))

    def test_grating_bars_run_along_the_orientation(self):
        g = insilico.grating(21, 21, np.pi / 2, 6.0, 0.0, 50.0, 128.0)  # bars along +y: constant down a column
        self.assertLess(np.ptp(g[:, 10]), 1e-4)
        self.assertGreater(np.ptp(g[10, :]), 50)
        disc = insilico.grating(21, 21, 0.0, 6.0, 0.0, 50.0, 128.0, centre=(10, 10), radius=3)
        self.assertEqual(disc[0, 0], 128.0)
        self.assertNotEqual(disc[10, 10], 128.0)


@unittest.skipUnless(EXE, "needs V1SYSID_EXE (simulate, train, predict, rf, mei)")
class Runs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cls.stimuli, cls.data, run = (os.path.join(d, x) for x in ("stimuli.h5", "tiny.h5", "run"))
        cls.v1("images", "--procedural", "dead_leaves", "--out", cls.stimuli)
        cls.v1("simulate", os.path.join(SOURCE, "data", "tiny.yaml"), "--stimuli", cls.stimuli, "--out", cls.data)
        cls.v1("train", os.path.join(SOURCE, "sweeps", "models", "cnn_tiny.yaml"), "--data", cls.data, "--out", run,
               "--max-iterations", "5", "--quiet")
        cls.checkpoint = os.path.join(run, "checkpoint.h5")
        with h5py.File(cls.data, "r") as f:
            cls.n = len(f["gt/orientation"])
        # A second model for an ensemble of two, and the ensemble file as docs/formats.md describes it.
        cls.v1("train", os.path.join(SOURCE, "sweeps", "models", "cnn_tiny.yaml"), "--data", cls.data, "--out",
               run + "2", "--max-iterations", "5", "--seed", "7", "--quiet")
        cls.ensemble = os.path.join(d, "ensemble.h5")
        members = [cls.checkpoint, os.path.join(run + "2", "checkpoint.h5")]
        with h5py.File(cls.ensemble, "w") as f:
            f["members"] = np.array(members, dtype="S")
            f["digests"] = np.array([hashlib.sha256(open(m, "rb").read()).hexdigest() for m in members], dtype="S")
            f["trials"] = np.array([-1, -1], dtype=np.int64)
            f["val_loss"] = np.full(2, np.nan)
            f.attrs.update({"kind": "v1sysid ensemble", "format_version": 1, "results": "", "architecture": "cnn_tiny",
                            "data_fraction": 1.0})

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @staticmethod
    def v1(*args):
        r = subprocess.run([EXE, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"v1sysid {' '.join(args)}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    def insilico(self, command, out, *extra, data=None):
        return subprocess.run([sys.executable, os.path.join(ANALYSIS, "insilico.py"), command, "--checkpoint",
                               self.checkpoint, "--data", data or self.data, "--stimuli", self.stimuli, "--out", out,
                               "--exe", EXE, *extra], capture_output=True, text=True)

    def test_tuning_against_the_ground_truth(self):
        out = os.path.join(self.tmp.name, "tuning")
        r = self.insilico("tuning", out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(out, "insilico.json")) as f:
            summary = json.load(f)
        n = self.n
        self.assertEqual(summary["neurons"], n)
        self.assertGreater(summary["oriented_neurons"], n // 2)
        # The true neurons' measured preference is their gt/orientation (a few degrees of 15-degree sampling).
        self.assertLess(summary["truth_tuning_vs_gt_orientation_deg_median"], 5.0)
        surround = summary["mean_si_with_surround_modulator"]
        other = summary["mean_si_without_surround_modulator"]
        self.assertGreater(surround["neurons"], 0)
        self.assertGreater(surround["truth"], other["truth"] + 0.1)
        for key in ("orientation_error_deg_vs_truth_median", "suppression_index_r", "c50_r"):
            self.assertIn(key, summary)
        with h5py.File(os.path.join(out, "tuning.h5"), "r") as f:
            for who in ("model", "truth"):
                self.assertEqual(f[f"{who}/size"].shape, (n, len(summary["sizes_px"])))
                self.assertEqual(f[f"{who}/contrast"].shape, (n, len(summary["contrasts"])))
                self.assertTrue(np.isfinite(f[f"{who}/preferred_orientation"][...]).all())
        # The summary is not replaced without --force; a dataset of other neurons is refused.
        r = self.insilico("tuning", out)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--force", r.stderr)
        other_data = os.path.join(self.tmp.name, "other.h5")
        self.v1("simulate", os.path.join(SOURCE, "data", "tiny.yaml"), "--stimuli", self.stimuli, "--out", other_data)
        with h5py.File(other_data, "a") as f:
            del f["gt/position"]
            f["gt/position"] = np.zeros((n + 1, 2), dtype=np.float32)
        r = self.insilico("tuning", out, "--force", data=other_data)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("pass the dataset the model was fitted on", r.stderr)

    def test_mei_scored_by_the_true_neurons(self):
        out = os.path.join(self.tmp.name, "mei")
        r = self.insilico("mei", out, "--neurons", "4", "--steps", "10", "--starts", "2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(out, "mei.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["neurons"], 4)
        with h5py.File(os.path.join(out, "mei.h5"), "r") as f:
            images, activation = f["images"][...], f["activation"][...]
        self.assertEqual(images.shape[:2], (4, 1))
        # The truth's rates of the MEIs, asked directly, are the scores' numerators (neuron k of image k).
        rates = os.path.join(self.tmp.name, "mei_rates.h5")
        self.v1("simulate", os.path.join(SOURCE, "data", "tiny.yaml"), "--stimuli", self.stimuli, "--rates-for",
                os.path.join(out, "mei.h5"), "--out", rates)
        with h5py.File(rates, "r") as f, h5py.File(os.path.join(out, "mei_scores.h5"), "r") as s:
            direct = f["rates"][...][np.arange(4), np.arange(4)]
            np.testing.assert_allclose(s["true_rate_at_mei"][...], direct, rtol=1e-6)
            np.testing.assert_allclose(s["model_activation_at_mei"][...], activation)
            np.testing.assert_allclose(s["true_ratio"][...], direct / s["true_max_over_training_images"][...],
                                       rtol=1e-6)
            self.assertTrue((s["true_max_over_training_images"][...] > 0).all())

    def evaluate(self, checkpoint):
        r = subprocess.run([EXE, "evaluate", "--checkpoint", checkpoint, "--data", self.data, "--tier", "test",
                            "--json"], capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def test_ensemble_gain_and_the_report_section(self):
        out = os.path.join(self.tmp.name, "all")
        r = subprocess.run([sys.executable, os.path.join(ANALYSIS, "insilico.py"), "ensemble", "--ensemble",
                            self.ensemble, "--checkpoint", self.checkpoint, "--data", self.data, "--out", out,
                            "--exe", EXE], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(out, "ensemble.json")) as f:
            summary = json.load(f)
        single, ensemble = self.evaluate(self.checkpoint), self.evaluate(self.ensemble)
        self.assertEqual(summary["members"], 2)
        self.assertEqual(summary["single_test_correlation"], single["test_correlation"])
        self.assertEqual(summary["ensemble_test_correlation"], ensemble["test_correlation"])
        self.assertNotEqual(single["test_correlation"], ensemble["test_correlation"])  # two different models
        self.assertAlmostEqual(summary["gain_test_correlation"],
                               ensemble["test_correlation"] - single["test_correlation"], places=12)
        self.assertEqual(self.insilico("tuning", out, "--neurons", "3").returncode, 0)
        self.assertEqual(self.insilico("mei", out, "--neurons", "2", "--steps", "5", "--starts", "1").returncode, 0)
        import report  # the report's in-silico section reads the three summaries and mei.h5
        rep = report.Report(os.path.join(self.tmp.name, "report"))
        report.insilico_section(rep, out)
        rep.write()
        with open(os.path.join(self.tmp.name, "report", "report.md")) as f:
            text = f.read()
        self.assertIn("## In-silico experiments scored against the ground truth", text)
        gain = f"{summary['gain_test_correlation']:.3g}"
        self.assertIn(f"| ensemble gain in test correlation | {gain} |", text)
        self.assertIn("| MEI true-rate ratio, median", text)
        self.assertIn("| suppression index, r(model, truth)", text)
        self.assertTrue(os.path.getsize(os.path.join(self.tmp.name, "report", "mei.png")) > 0)
        # A folder without the summaries is said, not an error.
        rep = report.Report(os.path.join(self.tmp.name, "report2"))
        report.insilico_section(rep, os.path.join(self.tmp.name, "report"))
        self.assertIn("in-silico experiments", rep.skipped[0])


if __name__ == "__main__":
    unittest.main()
