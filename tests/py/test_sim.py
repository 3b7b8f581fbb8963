"""`v1sysid simulate` output read with h5py the way neuralpredictors' StaticImageSet reads a file.

The stimulus file is written with h5py in the layout of `v1sysid images` (smoothed noise, not photographs).
"""
import os
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

EXE = os.environ.get("V1SYSID_EXE", "")
H, W = 18, 32


def write_stimuli(path, n_trainval=200, n_test=25, seed=0):
    rng = np.random.default_rng(seed)
    n = n_trainval + n_test
    noise = rng.normal(size=(n, H, W))
    kernel = np.exp(-np.arange(-4, 5) ** 2 / (2 * 1.5 ** 2))
    for axis in (1, 2):  # separable Gaussian smoothing, circular
        noise = sum(k * np.roll(noise, s, axis=axis) for s, k in zip(range(-4, 5), kernel))
    noise = (noise - noise.mean(axis=(1, 2), keepdims=True)) / noise.std(axis=(1, 2), keepdims=True)
    images = np.clip(128 + 40 * noise, 0, 255).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["split"] = np.array([b"trainval"] * n_trainval + [b"test"] * n_test, dtype="S8")
        f["photo_index"] = np.concatenate([np.zeros(n_trainval), np.ones(n_test)]).astype(np.int32)
        f["scale"] = np.ones(n, np.float32)
        f["position"] = np.zeros((n, 2), np.int32)
        for field, values in (("name", [b"noise-a", b"noise-b"]), ("package", [b"test"] * 2),
                              ("author", [b"test"] * 2), ("licence", [b"CC0-1.0"] * 2)):
            f["photos/" + field] = np.array(values)
        f.attrs["format_version"] = 1
        f.attrs["generator"] = "h5py test noise"
        f.attrs["seed"] = seed


CONFIG = """stimuli: stimuli.h5
seed: 3
n_neurons: 25
n_train: 150
n_validation: 15
n_test_images: 20
test_repeats: 5
image: {height: 16, width: 30}
noise: {model: zero_inflated_gamma, shared_gain_sd: 0.2}
"""


@unittest.skipUnless(EXE, "V1SYSID_EXE is not set (run through ctest)")
class SimulateOutputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        write_stimuli(os.path.join(cls.tmp.name, "stimuli.h5"))
        cfg = os.path.join(cls.tmp.name, "sim.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        cls.out = os.path.join(cls.tmp.name, "static1-2-3-preproc0.h5")
        run = subprocess.run([EXE, "simulate", cfg, "--out", cls.out], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(run.stdout + run.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_static_image_set_layout(self):
        n_trials = 150 + 15 + 20 * 5
        with h5py.File(self.out, "r") as f:
            # H5ArraySet: every per-trial key has the same length; img_shape = (1,) + images[0].shape.
            for key in ("images", "responses", "tiers", "trial_idx", "types"):
                self.assertEqual(len(f[key]), n_trials, key)
            self.assertEqual(f["images"].dtype, np.float32)
            self.assertEqual(f["images"].shape, (n_trials, 1, 16, 30))
            self.assertEqual(f["responses"].dtype, np.float32)
            self.assertEqual(f["responses"].shape, (n_trials, 25))
            self.assertEqual(f["tiers"].dtype.kind, "S")
            tiers = f["tiers"][:].astype(str)
            self.assertEqual({t: int((tiers == t).sum()) for t in set(tiers)},
                             {"train": 150, "validation": 15, "test": 100})
            ids = f["item_info/frame_image_id"][:]
            self.assertEqual(ids.dtype, np.int64)
            test_ids, counts = np.unique(ids[tiers == "test"], return_counts=True)
            self.assertTrue((counts == 5).all())
            self.assertTrue((test_ids >= 200).all())  # test stimuli are rows 200.. of the stimulus file
            self.assertEqual(len(np.unique(ids[tiers != "test"])), 165)
            self.assertTrue((ids[tiers != "test"] < 200).all())
            images = f["images"][:]
            self.assertGreaterEqual(images.min(), 0)
            self.assertLessEqual(images.max(), 255)
            responses = f["responses"][:]
            self.assertTrue(np.isfinite(responses).all())
            self.assertGreaterEqual(responses.min(), 0)
            # Statistics in neuro_data's layout: image scalars, per-neuron responses over the train tier. The std is
            # the one v1sysid divides the (non-negative) responses by, ddof 0, so that neuralpredictors'
            # NeuroNormalizer, which reads it, scales them the same way (ddof 1 differed by sqrt(n / (n - 1))).
            self.assertEqual(f["statistics/images/all/mean"].shape, ())
            train = responses[tiers == "train"]
            np.testing.assert_allclose(f["statistics/responses/all/std"][:], train.std(0, ddof=0), rtol=2e-5)
            np.testing.assert_allclose(f["statistics/responses/all/median"][:], np.median(train, 0), rtol=1e-5)
            np.testing.assert_allclose(f["statistics/images/all/mean"][()], images[tiers == "train"].mean(), rtol=1e-4)
            self.assertEqual(f["neurons/unit_ids"].shape, (25,))
            self.assertEqual(f["neurons/cell_motor_coordinates"].shape, (25, 3))
            self.assertEqual(f.attrs["format_version"], 1)
            self.assertIn("zero_inflated_gamma", f.attrs["config"].decode() if isinstance(f.attrs["config"], bytes)
                          else f.attrs["config"])

    def test_ground_truth(self):
        with h5py.File(self.out, "r") as f:
            cell_type = f["gt/cell_type"][:].astype(str)
            self.assertEqual(len(cell_type), 25)
            self.assertTrue(set(cell_type) <= {"simple", "complex", "normalized_complex", "center_surround"})
            orientation = f["gt/orientation"][:]
            oriented = cell_type != "center_surround"
            self.assertTrue(((orientation[oriented] >= 0) & (orientation[oriented] < np.pi)).all())
            self.assertTrue(np.isnan(orientation[~oriented]).all())
            pos = f["gt/position"][:]
            self.assertTrue(((pos[:, 0] >= 0) & (pos[:, 0] <= 29) & (pos[:, 1] >= 0) & (pos[:, 1] <= 15)).all())
            rates = f["gt/test_rates"][:]
            self.assertEqual(rates.shape, (20, 25))
            # The ceilings follow from the stored rates and noise parameters (noise.hpp), recomputed here.
            a = f["gt"].attrs
            s2 = np.exp(a["shared_gain_sd"] ** 2)
            k, p0 = a["zig_shape"], a["zig_zero_probability"]
            noise = (rates ** 2 * s2 * (1 + 1 / k) / (1 - p0) - rates ** 2).mean(0)
            signal = rates.var(0, ddof=1)
            np.testing.assert_allclose(f["gt/fev"][:], signal / (signal + noise), rtol=1e-4)
            np.testing.assert_allclose(f["gt/ceiling_correlation"][:], np.sqrt(signal / (signal + noise / 5)),
                                       rtol=1e-4)


BEHAVIOR_CONFIG = CONFIG.replace(
    "noise: {model: zero_inflated_gamma, shared_gain_sd: 0.2}",
    "noise: {model: poisson, gain_factors: {count: 2, log_sd: 0.4}, "
    "private_gain: {variance_median: 0.2, variance_log_sd: 2.4}}")


@unittest.skipUnless(EXE, "V1SYSID_EXE is not set (run through ctest)")
class SimulateBehaviorTest(unittest.TestCase):
    """Per-neuron noise (noise.hpp): the gain latents are per-trial behaviour, as neuralpredictors and SENSORIUM
    datasets carry pupil and running: `behavior` [n_trials, k] in the file, data/behavior/<i>.npy in a FileTree."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        write_stimuli(os.path.join(cls.tmp.name, "stimuli.h5"))
        cfg = os.path.join(cls.tmp.name, "sim.yaml")
        with open(cfg, "w") as f:
            f.write(BEHAVIOR_CONFIG)
        cls.out = os.path.join(cls.tmp.name, "behavior.h5")
        cls.tree = os.path.join(cls.tmp.name, "behavior_tree")
        for args in (["--out", cls.out], ["--out", cls.tree, "--format", "filetree"]):
            run = subprocess.run([EXE, "simulate", cfg] + args, capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(run.stdout + run.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_behavior_per_trial(self):
        n_trials = 150 + 15 + 20 * 5
        with h5py.File(self.out, "r") as f:
            behavior = f["behavior"][:]
            self.assertEqual(behavior.dtype, np.float32)
            self.assertEqual(behavior.shape, (n_trials, 2))  # same length as every other per-trial key
            self.assertIn("latent factors", f["behavior"].attrs["description"].decode()
                          if isinstance(f["behavior"].attrs["description"], bytes) else f["behavior"].attrs["description"])
            self.assertLess(abs(behavior.mean()), 0.15)  # standard normal latents
            self.assertLess(abs(behavior.std() - 1), 0.1)
        for i in (0, n_trials - 1):
            row = np.load(os.path.join(self.tree, "data", "behavior", "%d.npy" % i))
            self.assertEqual(row.shape, (2,))
            np.testing.assert_array_equal(row, behavior[i])

    def test_ceilings_include_the_gains(self):
        with h5py.File(self.out, "r") as f:
            rates = f["gt/test_rates"][:].astype(np.float64)
            w = f["gt/gain_loadings"][:]
            v = f["gt/private_gain_variance"][:]
            s = f["gt"].attrs["gain_log_sd"]
            np.testing.assert_allclose((w ** 2).sum(1), 1, rtol=1e-12)  # unit loadings: every gain has log-SD s
            second = np.exp(s ** 2 * (w ** 2).sum(1)) * (1 + v)  # E[q^2] of the gain (noise.hpp)
            noise = (rates + rates ** 2 * (second - 1)).mean(0)  # Poisson: V = lambda + lambda^2 (M - 1)
            signal = rates.var(0, ddof=1)
            np.testing.assert_allclose(f["gt/fev"][:], signal / (signal + noise), rtol=1e-4)
            np.testing.assert_allclose(f["gt/ceiling_correlation"][:], np.sqrt(signal / (signal + noise / 5)),
                                       rtol=1e-4)


if __name__ == "__main__":
    unittest.main()
