"""analysis/transfer_experiments.sh --quick end to end on noise stimuli: the outputs' structure, the neuron
subsets and frozen cores in the checkpoints it made, refusing a non-empty --out, and --resume reusing every
finished step.
"""
import json
import math
import os
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

from test_sim import write_stimuli

EXE = os.environ.get("V1SYSID_EXE", "")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis", "transfer_experiments.sh")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def text(attribute):
    return attribute.decode() if isinstance(attribute, bytes) else attribute


def run_script(*args):
    return subprocess.run(["bash", SCRIPT, "--v1sysid", EXE, *args], capture_output=True, text=True, timeout=600)


@unittest.skipUnless(EXE, "V1SYSID_EXE is not set (run through ctest)")
class TransferExperimentsQuickTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.stimuli = os.path.join(cls.tmp.name, "stimuli.h5")
        write_stimuli(cls.stimuli)
        cls.out = os.path.join(cls.tmp.name, "out")
        cls.first = run_script("--out", cls.out, "--quick", "--stimuli", cls.stimuli, "--jobs", "2")
        if cls.first.returncode != 0:
            raise AssertionError("the script failed:\n" + cls.first.stdout + cls.first.stderr)
        with open(os.path.join(cls.out, "transfer_results.json")) as f:
            cls.results = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def assert_metrics(self, e, neurons):
        for key in ("test_correlation", "fraction_oracle", "feve"):
            self.assertTrue(math.isfinite(e[key]), key)
        self.assertLessEqual(abs(e["test_correlation"]), 1.0)
        self.assertEqual(e["n_neurons"], neurons)

    def test_results_json_has_the_curve_and_both_claims(self):
        r = self.results
        self.assertTrue(r["config"]["quick"])
        self.assertEqual(r["config"]["fractions"], [0.25, 0.4, 1.0])
        self.assertEqual(r["config"]["neurons_per_animal"], 20)
        self.assertEqual(r["config"]["model"], "sweeps/models/lurz_transfer_quick.yaml")
        curve = r["lurz"]["curve"]
        self.assertEqual([c["fraction"] for c in curve], [0.25, 0.4, 1.0])
        self.assertEqual([c["train_images"] for c in curve], [30, 48, 120])
        for c in curve:
            self.assert_metrics(c["transfer"], 20)
            self.assert_metrics(c["direct"], 20)
        self.assertEqual(sorted(r["lurz"]["core"]["datasets"]), [f"v1-animal{k}" for k in range(1, 5)])
        claim = r["lurz"]["claim"]
        self.assertAlmostEqual(claim["difference"], claim["transfer_at_0.4"] - claim["direct_at_1.0"])
        self.assertEqual(claim["transfer_at_0.4"], curve[1]["transfer"]["test_correlation"])
        self.assertIsInstance(claim["holds"], bool)
        e = r["ecker"]
        self.assertEqual((e["core_neurons"], e["evaluated_neurons"]), ("0:10", "10:20"))
        self.assert_metrics(e["full_model"], 10)
        self.assert_metrics(e["transfer_model"], 10)
        self.assert_metrics(e["half_core_on_its_own_neurons"], 10)
        self.assertAlmostEqual(e["difference"], e["transfer_model"]["test_correlation"] - e["full_model"]["test_correlation"])
        self.assertEqual(e["claim"]["holds"], abs(e["difference"]) <= 0.02)

    def test_markdown_table_and_figure(self):
        with open(os.path.join(self.out, "transfer_results.md")) as f:
            md = f.read()
        self.assertIn("| fraction | training images | transfer test corr. | direct test corr.", md)
        self.assertEqual(md.count("\n| 0.25 | 30 |") + md.count("\n| 0.4 | 48 |") + md.count("\n| 1 | 120 |"), 3)
        self.assertIn("| transfer (frozen core of 0:10) | 10:20 |", md)
        with open(os.path.join(self.out, "transfer_curve.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertIn("done  transfer_f0.4", self.first.stdout)  # progress lines
        with open(os.path.join(self.out, "logs", "core.log")) as f:  # and each training's own, in its log
            log = f.read()
        self.assertRegex(log, r"train \d+/\d+ .*ETA")
        self.assertIn("train done in", log)

    def test_checkpoints_hold_the_neuron_subsets_and_the_frozen_cores(self):
        runs = os.path.join(self.out, "runs")
        with h5py.File(os.path.join(runs, "ecker_half_core", "checkpoint.h5"), "r") as core, \
                h5py.File(os.path.join(runs, "ecker_half_transfer", "checkpoint.h5"), "r") as transfer:
            np.testing.assert_array_equal(core["preprocessing/neuron_indices"][()], np.arange(10))
            np.testing.assert_array_equal(transfer["preprocessing/neuron_indices"][()], np.arange(10, 20))
            self.assertEqual(text(transfer["preprocessing/neuron_indices"].attrs["spec"]), "10:")
            for name, values in core["params/core"].items():
                for leaf in values:
                    np.testing.assert_array_equal(values[leaf][()], transfer["params/core"][name][leaf][()])
        with h5py.File(os.path.join(runs, "transfer_f0.4", "checkpoint.h5"), "r") as f:
            self.assertEqual(text(f.attrs["dataset"]), os.path.join(self.out, "data", "v1-animal5.h5"))
        with open(os.path.join(runs, "transfer_f0.4", "metrics.json")) as f:
            self.assertEqual(json.load(f)["data_fraction"], 0.4)

    def test_refuses_a_non_empty_out_and_resumes_without_retraining(self):
        refused = run_script("--out", self.out, "--quick", "--stimuli", self.stimuli)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("--resume", refused.stderr)
        self.assertIn("--force", refused.stderr)
        before = os.path.getmtime(os.path.join(self.out, "runs", "core", "checkpoint.h5"))
        resumed = run_script("--out", self.out, "--quick", "--stimuli", self.stimuli, "--resume")
        self.assertEqual(resumed.returncode, 0, resumed.stdout + resumed.stderr)
        self.assertIn("all 10 trainings done (10 of them from an earlier run)", resumed.stdout)
        self.assertNotIn("start ", resumed.stdout)
        self.assertEqual(os.path.getmtime(os.path.join(self.out, "runs", "core", "checkpoint.h5")), before)
        with open(os.path.join(self.out, "transfer_results.json")) as f:
            again = json.load(f)
        self.assertEqual(again["lurz"], self.results["lurz"])
        self.assertEqual(again["ecker"], self.results["ecker"])

    def test_experiments_option_runs_one_experiment_only(self):
        bad = run_script("--out", os.path.join(self.tmp.name, "bad"), "--quick", "--experiments", "lurtz")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--experiments 'lurtz' is not lurz, ecker or both", bad.stderr)
        out = os.path.join(self.tmp.name, "ecker_only")
        ecker = run_script("--out", out, "--quick", "--stimuli", self.stimuli, "--experiments", "ecker")
        self.assertEqual(ecker.returncode, 0, ecker.stdout + ecker.stderr)
        self.assertIn("all 3 trainings done", ecker.stdout)
        self.assertEqual(sorted(os.listdir(os.path.join(out, "runs"))),
                         ["ecker_full", "ecker_half_core", "ecker_half_transfer"])
        with open(os.path.join(out, "transfer_results.json")) as f:
            r = json.load(f)
        self.assertIsNone(r["lurz"])
        self.assertEqual(r["config"]["experiments"], "ecker")
        self.assertEqual(r["ecker"]["core_neurons"], "0:10")
        self.assertFalse(os.path.exists(os.path.join(out, "transfer_curve.png")))
        with open(os.path.join(out, "transfer_results.md")) as f:
            md = f.read()
        self.assertNotIn("Lurz", md)
        self.assertIn("## Ecker et al. 2019", md)

    def test_target_neurons_restrict_animal_5_but_not_the_core(self):
        # On data/transfer_quick.yaml with a smaller animal 5 (n_neurons as a list, as data/transfer_many.yaml).
        with open(os.path.join(REPO, "data", "transfer_quick.yaml")) as f:
            text = f.read()
        self.assertIn("\nn_neurons: 20\n", text)
        unequal = os.path.join(self.tmp.name, "unequal.yaml")
        with open(unequal, "w") as f:
            f.write(text.replace("\nn_neurons: 20\n", "\nn_neurons: [20, 20, 20, 20, 12]\n"))
        bad = run_script("--out", os.path.join(self.tmp.name, "bad_target"), "--quick", "--target-neurons", "8")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--target-neurons '8' is not a range A:B", bad.stderr)
        out = os.path.join(self.tmp.name, "target")
        lurz = run_script("--out", out, "--quick", "--stimuli", self.stimuli, "--experiments", "lurz",
                          "--target-neurons", "0:8", "--data-config", unequal)
        self.assertEqual(lurz.returncode, 0, lurz.stdout + lurz.stderr)
        with open(os.path.join(out, "transfer_results.json")) as f:
            r = json.load(f)
        self.assertEqual(r["config"]["target_neurons"], "0:8")
        self.assertEqual(self.results["config"]["target_neurons"], None)
        self.assertEqual((r["config"]["neurons_per_animal"], r["config"]["neurons_animal5"]), (20, 12))
        self.assertEqual(self.results["config"]["neurons_animal5"], 20)
        for c in r["lurz"]["curve"]:
            self.assert_metrics(c["transfer"], 8)
            self.assert_metrics(c["direct"], 8)
        for d in r["lurz"]["core"]["datasets"].values():  # the core still learns from every neuron
            self.assertEqual(d["n_neurons"], 20)
        for name in ("transfer_f0.4", "direct_f1.0"):
            with h5py.File(os.path.join(out, "runs", name, "checkpoint.h5"), "r") as f:
                np.testing.assert_array_equal(f["preprocessing/neuron_indices"][()], np.arange(8))
        with open(os.path.join(out, "transfer_results.md")) as f:
            md = f.read()
        self.assertIn("transferred to animal 5 (its neurons 0:8, 8 of 12)", md)
        self.assertIn("(5 animals x 20 neurons, animal 5: 12, 120 training images each)", md)


if __name__ == "__main__":
    unittest.main()
