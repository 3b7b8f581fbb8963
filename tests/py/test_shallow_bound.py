"""analysis/shallow_bound.py: the no-learned-core bound of a digital V1 (issue 17, item 5).

A small simulated dataset gives a fraction of the ceiling in (0, 1.05]; a dataset whose responses ARE a linear
function of the bank's features at the RF centres reaches its own ceiling; a file without gt/ or with a
field missing gives a one-line error naming the file and the field.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

from test_sim import write_stimuli  # smoothed-noise stimuli in the layout of `v1sysid images` (18 x 32)

EXE = os.environ.get("V1SYSID_EXE", "")
ANALYSIS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis")
TOOL = os.path.join(ANALYSIS, "shallow_bound.py")
sys.path.insert(0, ANALYSIS)
import shallow_bound as sb  # noqa: E402

CONFIG = """stimuli: stimuli.h5
seed: 5
n_neurons: 30
n_train: 300
n_validation: 40
n_test_images: 15
test_repeats: 5
image: {height: 18, width: 32}
receptive_fields: {wavelength_px: [4, 12], sigma_px: [1.5, 3], aspect_ratio: [0.6, 1.0], position_margin_px: 3}
noise: {model: poisson}
"""


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300)


def write_linear_dataset(path, n_neurons=12, n_train=500, n_val=100, n_test=30, repeats=4, seed=0):
    """A StaticImageSet whose noise-free rates are a linear function of the bank's features at each neuron's
    centre (the features computed the way the tool does: train-tier z-scoring, c_lambda over the first
    POOL_IMAGES training images); a little Gaussian noise, and gt/ceiling_correlation the analytic ceiling of
    that design."""
    rng = np.random.default_rng(seed)
    h, w = 18, 32
    n_img = n_train + n_val + n_test
    noise = rng.normal(size=(n_img, h, w))
    kernel = np.exp(-np.arange(-3, 4) ** 2 / (2 * 1.2 ** 2))
    for axis in (1, 2):
        noise = sum(k * np.roll(noise, s, axis=axis) for s, k in zip(range(-3, 4), kernel))
    images = np.clip(128 + 40 * noise / noise.std(), 0, 255).astype(np.float32)
    position = np.column_stack([rng.uniform(3, w - 4, n_neurons), rng.uniform(3, h - 4, n_neurons)])
    wavelengths = rng.uniform(4, 12, n_neurons)
    wavelengths[:2] = (4, 12)  # the bank spans [min, max] of gt/wavelength_px
    z = (images - images[:n_train].mean()) / images[:n_train].std()
    bank = sb.Bank(h, w, (4.0, 12.0))
    sampler = sb.Sampler(position, h, w)
    _, constants = sb.features(z[:min(n_train, sb.POOL_IMAGES)], bank, sampler)
    F, _ = sb.features(z, bank, sampler, constants)  # (neurons, images, features)
    F = (F - F[:, :n_train].mean(axis=1, keepdims=True)) / F[:, :n_train].std(axis=1, keepdims=True)
    weights = rng.normal(size=(n_neurons, F.shape[2])) * (rng.random((n_neurons, F.shape[2])) < 0.1)
    rates = 2 + np.einsum("nip,np->in", F, weights) / np.sqrt(np.maximum((weights ** 2).sum(axis=1), 1e-9))
    noise_sd = 0.1
    # Trials: train and validation images once each, test images `repeats` times.
    ids = np.concatenate([np.arange(n_train + n_val), np.repeat(np.arange(n_train + n_val, n_img), repeats)])
    tiers = np.array([b"train"] * n_train + [b"validation"] * n_val + [b"test"] * (n_test * repeats))
    responses = rates[ids] + noise_sd * rng.normal(size=(len(ids), n_neurons))
    signal_var = rates[n_train + n_val:].var(axis=0)
    ceiling = np.sqrt(signal_var / (signal_var + noise_sd ** 2 / repeats))
    with h5py.File(path, "w") as f:
        f["images"] = images[ids][:, None]
        f["responses"] = responses.astype(np.float32)
        f["tiers"] = tiers
        f["item_info/frame_image_id"] = ids.astype(np.int64)
        f["gt/position"] = position.astype(np.float32)
        f["gt/wavelength_px"] = wavelengths
        f["gt/ceiling_correlation"] = ceiling.astype(np.float32)
        f["gt/cell_type"] = np.array([b"linear"] * n_neurons)
    return n_train


class LinearDataset(unittest.TestCase):
    def test_bound_reaches_its_own_ceiling(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "linear.h5")
            write_linear_dataset(path)
            run = run_tool(path, "--json", "--chunk", "100")  # several chunks: the Gram matrix summed over them
            self.assertEqual(run.returncode, 0, run.stderr)
            res = json.loads(run.stdout)
            self.assertEqual(res["n_features"], 195)
            self.assertEqual(res["n_neurons"], 12)
            self.assertGreater(res["fraction_of_ceiling"], 0.97)
            self.assertLess(res["fraction_of_ceiling"], 1.03)


@unittest.skipUnless(EXE, "V1SYSID_EXE is not set (run through ctest)")
class SimulatedDataset(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = cls.tmp.name
        write_stimuli(os.path.join(tmp, "stimuli.h5"), n_trainval=360, n_test=20)
        cfg = os.path.join(tmp, "sim.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        cls.data = os.path.join(tmp, "sim.h5")
        sim = subprocess.run([EXE, "simulate", cfg, "--out", cls.data], capture_output=True, text=True)
        if sim.returncode != 0:
            raise RuntimeError(sim.stdout + sim.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_fraction_of_the_ceiling(self):
        out = os.path.join(self.tmp.name, "bound.json")
        run = run_tool(self.data, "--json", "--out", out)
        self.assertEqual(run.returncode, 0, run.stderr)
        res = json.loads(run.stdout)
        self.assertGreater(res["fraction_of_ceiling"], 0)
        self.assertLessEqual(res["fraction_of_ceiling"], 1.05)
        with h5py.File(self.data, "r") as f:
            ceiling = f["gt/ceiling_correlation"][()].astype(np.float64).mean()
        self.assertAlmostEqual(res["ceiling"], ceiling, places=6)
        self.assertAlmostEqual(res["fraction_of_ceiling"], res["shallow_bound_correlation"] / ceiling, places=9)
        self.assertEqual(sorted(res["by"]["cell_type"]), ["center_surround", "complex", "normalized_complex", "simple"])
        with open(out) as f:
            saved = json.load(f)
        self.assertEqual(saved["fraction_of_ceiling"], res["fraction_of_ceiling"])
        self.assertEqual(saved["data_size"], os.path.getsize(self.data))
        line = run_tool(self.data)  # the plain line says the same number
        self.assertEqual(line.returncode, 0, line.stderr)
        self.assertIn(f"fraction of the ceiling {res['fraction_of_ceiling']:.3f}", line.stdout)

    def report(self, name):
        """report.md of a results file whose dataset is the simulated digital V1."""
        results = os.path.join(self.tmp.name, f"{name}.h5")
        with h5py.File(results, "w") as f:
            t = f.create_group("trials")
            t["architecture"] = np.array(["cnn_16"] * 2, dtype="S64")
            t["status"] = np.array(["ok"] * 2, dtype="S16")
            t["best_val_loss"] = np.array([2.0, 1.0])
            t["test_correlation"] = np.array([0.3, 0.4])
            t["data_fraction"] = np.array([1.0, 1.0])
            f.attrs["dataset_path"] = self.data
        out = os.path.join(self.tmp.name, name)
        run = subprocess.run([sys.executable, os.path.join(ANALYSIS, "report.py"), results, "--out", out],
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        with open(os.path.join(out, "report.md")) as f:
            return f.read()

    def test_report_prints_the_bound_next_to_the_ceiling(self):
        res = json.loads(run_tool(self.data, "--json").stdout)
        cached = os.path.splitext(self.data)[0] + ".shallow_bound.json"
        if os.path.exists(cached):
            os.remove(cached)
        text = self.report("computed")
        self.assertIn("## Digital V1: ceiling and shallow bound", text)
        self.assertIn(f"**{res['ceiling']:.3f}**", text)
        self.assertIn(f"**{res['fraction_of_ceiling']:.3f} of the ceiling** (computed for this report)", text)
        self.assertIn(f"cnn_16 (data fraction 1): best trial's test correlation 0.400, {0.4 / res['ceiling']:.3f} "
                      "of the ceiling", text)
        # A bound saved with --out next to the data is read, not computed again ...
        self.assertEqual(run_tool(self.data, "--out", cached).returncode, 0)
        with open(cached) as f:
            saved = json.load(f)
        saved["fraction_of_ceiling"] = 0.123456  # a marker: the report shows the file's number
        with open(cached, "w") as f:
            json.dump(saved, f)
        self.assertIn(f"**0.123 of the ceiling** (`{cached}`)", self.report("cached"))
        # ... unless it was made from another version of the data.
        os.utime(self.data, ns=(saved["data_mtime_ns"] + 10 ** 9,) * 2)
        self.assertIn("(computed for this report)", self.report("stale"))


class BadInput(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "linear.h5")
        write_linear_dataset(self.path, n_neurons=3, n_train=60, n_val=20, n_test=5)

    def tearDown(self):
        self.tmp.cleanup()

    def assert_one_line_error(self, run, code, *words):
        self.assertEqual(run.returncode, code, run.stdout + run.stderr)
        self.assertEqual(run.stdout, "")
        lines = run.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, run.stderr)
        for word in words:
            self.assertIn(word, lines[0])

    def test_no_gt_group(self):
        with h5py.File(self.path, "a") as f:
            del f["gt"]
        self.assert_one_line_error(run_tool(self.path), 4, self.path, "gt/position", "v1sysid simulate")

    def test_missing_field(self):
        with h5py.File(self.path, "a") as f:
            del f["gt/ceiling_correlation"]
        self.assert_one_line_error(run_tool(self.path, "--json"), 4, self.path, "gt/ceiling_correlation", "missing")

    def test_missing_tier(self):
        with h5py.File(self.path, "a") as f:
            tiers = f["tiers"][()]
            tiers[tiers == b"validation"] = b"train"
            f["tiers"][...] = tiers
        self.assert_one_line_error(run_tool(self.path), 4, self.path, "tiers", "validation")

    def test_not_hdf5_and_absent(self):
        text = os.path.join(self.tmp.name, "notes.h5")
        with open(text, "w") as f:
            f.write("not hdf5\n")
        self.assert_one_line_error(run_tool(text), 3, text, "HDF5")
        absent = os.path.join(self.tmp.name, "absent.h5")
        self.assert_one_line_error(run_tool(absent), 3, absent, "no such file")


if __name__ == "__main__":
    unittest.main()
