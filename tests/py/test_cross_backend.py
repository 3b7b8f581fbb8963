"""Whole training steps on two Kokkos backends agree: the executable under test (V1SYSID_EXE, e.g. the OpenMP or
a CUDA build) against a reference build of the same source (V1SYSID_REFERENCE_EXE, Debian's Serial Kokkos;
env/test.sh passes the Serial leg's executable to the OpenMP leg).

BackendOps.* (tests/test_backend.cpp) compares every kernel alone; this compares what a user runs, `v1sysid
train`, for the cnn, roteq and stacked2d + Gaussian readout models of test_export_torch.py on the same data and
seed: the parameters after one Adam step, and the test-tier predictions after a few steps. The two backends sum
in other orders, so they agree to rounding, not bit for bit. Adam's first step moves every parameter by about
the learning rate times the sign of its gradient, so a parameter whose gradient is zero up to rounding may move
either way on the two backends: the first check counts those, and fails on any other difference.

Skipped with a message unless both executables are set and their backends differ.
"""
import os
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

from test_export_torch import LURZ_MODEL, MODEL, MODEL_ROTEQ, write_dataset

EXE = os.environ.get("V1SYSID_EXE", "")
REFERENCE = os.environ.get("V1SYSID_REFERENCE_EXE", "")
MODELS = {"cnn": MODEL, "roteq": MODEL_ROTEQ, "stacked2d_gaussian": LURZ_MODEL}


def backends(exe):
    """The 'backends:' line of `v1sysid --version`."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if "backends:" in line), "?")


def skip_reason():
    if not EXE or not REFERENCE:
        return "needs V1SYSID_EXE and V1SYSID_REFERENCE_EXE (a build of another Kokkos backend)"
    for exe in (EXE, REFERENCE):
        if not os.access(exe, os.X_OK):
            return f"{exe} is not an executable (build it first)"
    if backends(EXE) == backends(REFERENCE):
        return f"both executables run on {backends(EXE)}"
    return None


def train(exe, model, data, out, iterations):
    subprocess.run([exe, "train", model, "--data", data, "--out", out, "--max-iterations", str(iterations),
                    "--quiet"], check=True, capture_output=True, text=True)
    return os.path.join(out, "checkpoint.h5")


def parameters(checkpoint):
    """Every dataset under params/, as float64 arrays by name."""
    found = {}
    with h5py.File(checkpoint, "r") as f:
        f["params"].visititems(lambda name, obj: found.__setitem__(name, obj[...].astype(np.float64))
                               if isinstance(obj, h5py.Dataset) else None)
    return found


def predict(exe, checkpoint, data, out):
    subprocess.run([exe, "predict", "--checkpoint", checkpoint, "--data", data, "--tier", "test", "--out", out],
                   check=True, capture_output=True, text=True)
    with h5py.File(out, "r") as f:
        return f["predictions"][...].astype(np.float64)


@unittest.skipIf(skip_reason() is not None, skip_reason() or "")
class CrossBackend(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "data.h5")
        write_dataset(cls.data, np.random.default_rng(11))
        print(f"\nunder test: {backends(EXE)} ({EXE}); reference: {backends(REFERENCE)} ({REFERENCE})")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_both(self, name, iterations):
        model = os.path.join(self.tmp.name, f"{name}.yaml")
        with open(model, "w") as f:
            f.write(MODELS[name])
        return [train(exe, model, self.data, os.path.join(self.tmp.name, f"{name}_{iterations}_{tag}"), iterations)
                for tag, exe in (("test", EXE), ("reference", REFERENCE))]

    def test_one_training_step_moves_the_parameters_alike(self):
        for name in MODELS:
            with self.subTest(model=name):
                under_test, reference = (parameters(c) for c in self.run_both(name, 1))
                self.assertEqual(sorted(under_test), sorted(reference))
                total = flipped = 0
                worst = 0.0
                for key, ref in reference.items():
                    got = under_test[key]
                    self.assertEqual(got.shape, ref.shape, key)
                    diff = np.abs(got - ref)
                    scale = np.maximum(np.abs(ref), 1e-6)
                    # A sign flip of a rounding-level gradient moves the two by about twice the step.
                    flips = diff > 1e-3 * scale
                    total += ref.size
                    flipped += int(flips.sum())
                    if (~flips).any():
                        worst = max(worst, float((diff / scale)[~flips].max()))
                print(f"{name}: {total} parameters, {flipped} differ beyond 1e-3 relative, the rest within "
                      f"{worst:.1e}")
                self.assertLessEqual(worst, 1e-4, name)
                self.assertLessEqual(flipped, max(1, total // 1000), name)

    def test_predictions_after_a_few_steps_agree(self):
        for name in MODELS:
            with self.subTest(model=name):
                checkpoints = self.run_both(name, 5)
                under_test, reference = (
                    predict(exe, c, self.data, os.path.join(os.path.dirname(c), "pred.h5"))
                    for exe, c in zip((EXE, REFERENCE), checkpoints))
                self.assertEqual(under_test.shape, reference.shape)
                scale = np.abs(reference).max()
                self.assertGreater(scale, 0)
                err = float((np.abs(under_test - reference) / np.maximum(np.abs(reference), 1e-3 * scale)).max())
                print(f"{name}: test-tier predictions after 5 steps within {err:.1e} relative")
                self.assertLessEqual(err, 1e-3, name)


if __name__ == "__main__":
    unittest.main()
