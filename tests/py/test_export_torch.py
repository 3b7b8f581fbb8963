"""The checkpoint's export/ group is enough to run the model in another framework.

Trains a small CNN (and a small rotation-equivariant model, whose export/ holds the expanded filters of all
rotations and per-channel batch-norm vectors) on a tiny synthetic StaticImageSet with the v1sysid executable, writes test-tier
predictions with `v1sysid predict`, then rebuilds the model from export/ alone with torch.nn.functional
(conv2d, batch_norm in evaluation mode, softplus / elu, factorised readout, softplus output) in double
precision and compares the two to 1e-4 relative. Skipped with a message when torch or h5py is missing.
"""
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
    import h5py
    import torch
    import torch.nn.functional as F
    MISSING = None
except ImportError as e:  # pragma: no cover - depends on the machine
    MISSING = str(e)

HERE = os.path.dirname(os.path.abspath(__file__))


def executable():
    exe = os.environ.get("V1SYSID_EXE")
    if exe:
        return exe
    for preset in ("ci", "cpu-release", "cpu-debug"):
        candidate = os.path.join(HERE, "..", "..", "build", preset, "v1sysid")
        if os.path.exists(candidate):
            return candidate
    return "v1sysid"


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def write_dataset(path, rng, height=14, width=15, neurons=6, train=300, validation=60, test_images=10, repeats=4):
    """White-noise images; each neuron a signed Gaussian blob followed by softplus and Poisson noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    blobs = []
    for n in range(neurons):
        cy, cx = rng.uniform(3, height - 3), rng.uniform(3, width - 3)
        b = (-1) ** n * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5 ** 2))
        blobs.append(b / np.linalg.norm(b))
    blobs = np.stack(blobs)
    unique = train + validation + test_images
    pictures = 128 + 40 * rng.standard_normal((unique, height, width))
    order = list(range(train + validation)) + [train + validation + i for _ in range(repeats) for i in range(test_images)]
    tiers = ["train"] * train + ["validation"] * validation + ["test"] * (test_images * repeats)
    images = pictures[order][:, None].astype(np.float32)
    drive = np.einsum("nhw,thw->tn", blobs, (pictures[order] - 128) / 40)
    responses = rng.poisson(np.log1p(np.exp(1.5 * drive + 0.3))).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["responses"] = responses
        f["tiers"] = np.array(tiers, dtype="S")
        f["item_info/frame_image_id"] = np.array(order, dtype=np.int64) + 500
        f["neurons/unit_ids"] = np.arange(neurons, dtype=np.int64)
    return images, tiers


MODEL = """
core: {filter_sizes: [5, 3, 3], channels: [4, 5, 3], nonlinearities: [softplus, elu, none],
       batchnorm_scale: [true, true, false], smooth_weight: 0.01, sparse_weight: 0.01,
       rel_smooth: [1, 0.5, 0.5], rel_sparse: [0, 1, 1]}
readout: {regularizer: joint_l1, weight: 0.002}
train: {learning_rate: 0.01, batch_size: 32, val_every: 10, max_iterations: 60, seed: 2}
"""

MODEL_ROTEQ = """
core: {kind: roteq, filter_sizes: [5, 3], features: [2, 2], rotations: 8, nonlinearities: [softplus, none],
       batchnorm_scale: [true, false], smooth_weight: 0.01, sparse_weight: 0.01, rel_smooth: [1, 0.5],
       rel_sparse: [0, 1]}
readout: {regularizer: joint_l1, weight: 0.002}
train: {learning_rate: 0.01, batch_size: 32, val_every: 10, max_iterations: 40, seed: 2}
"""


def torch_forward(export, images):
    """The model from export/ alone; images [T, 1, H, W] as stored."""
    pre = export["preprocessing"]
    x = (torch.from_numpy(images).double() - float(pre["image_mean"][()])) / float(pre["image_std"][()])
    for i in range(int(export.attrs["num_layers"])):
        g = export[f"layer{i}"]
        w = torch.from_numpy(g["weight"][...]).double()
        padding = text(g.attrs["padding"])
        pad = w.shape[-1] // 2 if padding == "same" else (0 if padding == "valid" else int(padding))
        x = F.conv2d(x, w, padding=pad, groups=int(g.attrs["groups"]))
        if "bn_mean" in g:  # depth-separable parts without a batch norm have none
            t = {k: torch.from_numpy(g[k][...]).double() for k in ("bn_mean", "bn_var", "bn_gamma", "bn_beta")}
            x = F.batch_norm(x, t["bn_mean"], t["bn_var"], weight=t["bn_gamma"], bias=t["bn_beta"], training=False,
                             eps=float(g.attrs["bn_eps"]))
        nonlinearity = text(g.attrs["nonlinearity"])
        if nonlinearity == "softplus":
            x = F.softplus(x)
        elif nonlinearity == "elu":
            x = F.elu(x)
        else:
            assert nonlinearity == "none", nonlinearity
    r = export["readout"]
    if text(r.attrs["kind"]) == "gaussian":
        mu = torch.from_numpy(r["mu"][...]).double()                # [N, 2], (x, y) in [-1, 1]
        features = torch.from_numpy(r["features"][...]).double()  # [N, C]
        bias = torch.from_numpy(r["bias"][...]).double()
        grid = mu[None, :, None, :].expand(x.shape[0], -1, -1, -1)  # [B, N, 1, 2]
        sample = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[..., 0]
        h = torch.einsum("bcn,nc->bn", sample, features) + bias
        assert text(r.attrs["output_nonlinearity"]) == "elu_plus_one"
        y = F.elu(h) + 1
        return (y * torch.from_numpy(pre["response_std"][...]).double()).numpy()
    assert text(r.attrs["kind"]) == "factorized"
    mask = torch.from_numpy(r["mask"][...]).double()          # [N, H, W], already |M|
    features = torch.from_numpy(r["features"][...]).double()  # [N, C]
    bias = torch.from_numpy(r["bias"][...]).double()
    h = torch.einsum("bchw,nhw,nc->bn", x, mask, features) + bias
    assert text(r.attrs["output_nonlinearity"]) == "softplus"
    y = F.softplus(h)
    return (y * torch.from_numpy(pre["response_std"][...]).double()).numpy()


# Lurz et al. 2021: stacked2d core (depth-separable layers exported as 1x1 / depthwise / 1x1) and the Gaussian
# readout (grid_sample at mu, ELU + 1).
LURZ_MODEL = """
core: {kind: stacked2d, filter_sizes: [5, 3, 3], channels: [4, 5, 3], nonlinearities: [elu, elu, elu],
       batchnorm_scale: [true, true, true], rel_smooth: [0, 0, 0], rel_sparse: [0, 0, 0], laplace_weight: 0.1}
readout: {kind: gaussian, feature_weight: 0.01}
train: {schedule: lurz, batch_size: 32, max_epochs: 3, seed: 2}
"""


@unittest.skipIf(MISSING is not None, f"PyTorch / h5py / numpy not available: {MISSING}")
class ExportTorch(unittest.TestCase):
    def test_torch_forward_from_export_matches_predict(self):
        self.check_export(MODEL)

    def test_roteq_export_holds_the_expanded_filters(self):
        self.check_export(MODEL_ROTEQ, expected_weight_shapes=[(16, 1, 5, 5), (16, 16, 3, 3)])

    def test_stacked2d_gaussian_export_matches_predict(self):
        self.check_export(LURZ_MODEL)

    def check_export(self, model_text, expected_weight_shapes=None):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "tiny.h5")
            images, tiers = write_dataset(data, np.random.default_rng(4))
            model = os.path.join(tmp, "model.yaml")
            with open(model, "w") as f:
                f.write(model_text)
            out = os.path.join(tmp, "run")
            exe = executable()
            subprocess.run([exe, "train", model, "--data", data, "--out", out, "--quiet"], check=True)
            pred = os.path.join(tmp, "pred.h5")
            subprocess.run([exe, "predict", "--checkpoint", os.path.join(out, "checkpoint.h5"), "--data", data,
                            "--tier", "test", "--out", pred], check=True)
            with h5py.File(pred, "r") as f:
                predicted = f["predictions"][...]
                image_ids = f["image_ids"][...]
            test_rows = [i for i, t in enumerate(tiers) if t == "test"]
            with h5py.File(os.path.join(out, "checkpoint.h5"), "r") as f:
                reference = torch_forward(f["export"], images[test_rows])
                if expected_weight_shapes:
                    shapes = [f[f"export/layer{i}/weight"].shape for i in range(len(expected_weight_shapes))]
                    self.assertEqual(shapes, expected_weight_shapes)
                    self.assertEqual(f["export/layer0/bn_beta"].shape, (16,))
            self.assertEqual(predicted.shape, reference.shape)
            self.assertEqual(len(image_ids), len(test_rows))
            scale = np.abs(reference).max()
            self.assertGreater(scale, 0)
            # Relative error per element, with a floor of 1e-3 of the largest prediction for values near 0.
            err = np.abs(predicted - reference) / np.maximum(np.abs(reference), 1e-3 * scale)
            print(f"export vs predict: max relative error {err.max():.2e} over {reference.size} predictions")
            self.assertLess(err.max(), 1e-4)
            # analysis/torch_model.py (the nn.Module users get) gives the same predictions.
            sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))
            from torch_model import load_model
            module = load_model(os.path.join(out, "checkpoint.h5"))
            with torch.no_grad():
                from_module = module(torch.from_numpy(images[test_rows])).numpy()
            err = np.abs(predicted - from_module) / np.maximum(np.abs(from_module), 1e-3 * scale)
            print(f"analysis/torch_model.py vs predict: max relative error {err.max():.2e}")
            self.assertLess(err.max(), 1e-4)


if __name__ == "__main__":
    unittest.main()
