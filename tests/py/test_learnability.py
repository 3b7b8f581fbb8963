"""analysis/learnability.py: the simulator's own raw drive with a fitted per-neuron readout (issue 17, item 6).

On a small deep-library dataset written with `simulate --store-raw-drive`, the true drive reaches (nearly) the
ceiling; the control, the same file with gt/raw_drive shuffled across trials, scores near 0, so the check can
fail; a file without gt/raw_drive gives a one-line error naming the file, the field and the flag.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

from test_sim import write_stimuli  # smoothed-noise stimuli in the layout of `v1sysid images` (18 x 32)

EXE = os.environ.get("V1SYSID_EXE", "")
TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis", "learnability.py")

# The deep library and calibrated noise of data/tiny.yaml on smaller images; 80 neurons and 1,200 training
# trials so that the readout's estimation error is small next to the gap being tested.
CONFIG = """stimuli: stimuli.h5
seed: 3
n_neurons: 80
n_train: 1200
n_validation: 200
n_test_images: 20
test_repeats: 10
image: {height: 18, width: 32}
receptive_fields: {wavelength_px: [4, 12], sigma_px: [1.5, 3], aspect_ratio: [0.6, 1.0], position_margin_px: 3}
responses: {mean_rate: [0.1, 1.0]}
noise:
  model: poisson
  gain_factors: {count: 2, log_sd: 0.4, loading_mean: [1.0, 0.0], loading_sd: 0.5}
  private_gain: {variance_median: 0.2, variance_log_sd: 2.4}
cell_library: {kind: deep}
"""


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300)


@unittest.skipUnless(EXE, "V1SYSID_EXE is not set (run through ctest)")
class Learnability(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = cls.tmp.name
        write_stimuli(os.path.join(tmp, "stimuli.h5"), n_trainval=1400, n_test=20)
        cfg = os.path.join(tmp, "sim.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        cls.data = os.path.join(tmp, "sim.h5")
        sim = subprocess.run([EXE, "simulate", cfg, "--out", cls.data, "--store-raw-drive"], capture_output=True,
                             text=True)
        if sim.returncode != 0:
            raise RuntimeError(sim.stdout + sim.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def result(self, path):
        run = run_tool(path, "--json")
        self.assertEqual(run.returncode, 0, run.stderr)
        return json.loads(run.stdout)

    def test_the_true_drive_reaches_the_ceiling(self):
        res = self.result(self.data)
        with h5py.File(self.data, "r") as f:
            ceiling = f["gt/ceiling_correlation"][()].astype(np.float64).mean()
        self.assertAlmostEqual(res["ceiling"], ceiling, places=6)
        self.assertAlmostEqual(res["fraction_of_ceiling"], res["learnability_correlation"] / ceiling, places=9)
        self.assertEqual(res["n_neurons"], 80)
        self.assertGreater(res["fraction_of_ceiling"], 0.9)
        self.assertLess(res["fraction_of_ceiling"], 1.1)
        self.assertIn("corner", res["by"]["cell_type"])
        line = run_tool(self.data)
        self.assertEqual(line.returncode, 0, line.stderr)
        self.assertIn(f"fraction of the ceiling {res['fraction_of_ceiling']:.3f}", line.stdout)

    def test_a_shuffled_drive_scores_near_zero(self):
        shuffled = os.path.join(self.tmp.name, "shuffled.h5")
        shutil.copyfile(self.data, shuffled)
        with h5py.File(shuffled, "a") as f:
            g = f["gt/raw_drive"][()]
            f["gt/raw_drive"][...] = g[np.random.default_rng(0).permutation(len(g))]
        self.assertLess(abs(self.result(shuffled)["fraction_of_ceiling"]), 0.3)

    def test_a_file_without_the_drive_names_the_field_and_the_flag(self):
        bare = os.path.join(self.tmp.name, "bare.h5")
        shutil.copyfile(self.data, bare)
        with h5py.File(bare, "a") as f:
            del f["gt/raw_drive"]
        run = run_tool(bare)
        self.assertEqual(run.returncode, 4, run.stdout + run.stderr)
        self.assertEqual(run.stdout, "")
        lines = run.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, run.stderr)
        for word in (bare, "gt/raw_drive", "--store-raw-drive"):
            self.assertIn(word, lines[0])
        run = run_tool(os.path.join(self.tmp.name, "none.h5"))
        self.assertEqual(run.returncode, 3, run.stderr)


if __name__ == "__main__":
    unittest.main()
