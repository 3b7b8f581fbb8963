"""The checkpoint's export/ group is enough to run the model in another framework.

Trains a small CNN (and a small rotation-equivariant model, whose export/ holds the expanded filters of all
rotations and per-channel batch-norm vectors) on a tiny synthetic StaticImageSet with the v1sysid executable, writes test-tier
predictions with `v1sysid predict`, then rebuilds the model from export/ alone with torch.nn.functional
(conv2d, batch_norm in evaluation mode, softplus / elu, factorised readout, softplus output) in double
precision and compares the two to 1e-4 relative. Skipped with a message when torch or h5py is missing.
"""
import json
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

try:  # neuralpredictors is not a Debian package: the real classes are checked only where it is importable
    import importlib
    import neuralpredictors.layers.cores  # noqa: F401
    import neuralpredictors.layers.readouts  # noqa: F401
    NEURALPREDICTORS_MISSING = None
except Exception as e:  # pragma: no cover - depends on the machine
    NEURALPREDICTORS_MISSING = str(e)

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


def write_dataset(path, rng, height=14, width=15, neurons=6, train=300, validation=60, test_images=10, repeats=4,
                  cortex=False):
    """White-noise images; each neuron a signed Gaussian blob followed by softplus and Poisson noise; with
    cortex, neurons/cell_motor_coordinates follow the blob centres (for the Gaussian readout's grid predictor)."""
    yy, xx = np.mgrid[0:height, 0:width]
    blobs, centres = [], []
    for n in range(neurons):
        cy, cx = rng.uniform(3, height - 3), rng.uniform(3, width - 3)
        centres.append((40 * cx, 40 * cy, 200.0))
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
        if cortex:
            f["neurons/cell_motor_coordinates"] = np.array(centres, dtype=np.float32)
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


# neuralpredictors interchange (`v1sysid export --format neuralpredictors`, docs/formats.md). The forward below is
# written from the documented mapping alone (names, shapes, constructor arguments in model.json), not from the
# v1sysid code: Hermite synthesis from coeffs, H and Rs; rotation-shared batch norm; the separate
# bias layer of a layer without scale; FullFactorized2d (abs of spatial) and FullGaussian2d (mu or mu_transform of
# source_grid, clamp, grid_sample); then the output nonlinearity and response_std.
NP_CNN = MODEL.replace("nonlinearities: [softplus, elu, none]", "nonlinearities: [softplus, softplus, none]")
NP_ROTEQ_PER_CHANNEL = MODEL_ROTEQ.replace("rotations: 8,", "rotations: 8, batchnorm_shared_rotations: false,")
NP_LURZ_CORTEX = LURZ_MODEL.replace("{kind: gaussian,", "{kind: gaussian, grid_predictor: cortex,")


def hermite_weights(sd, prefix, rotations, first_layer):
    """Filters of a HermiteConv2D: [R*F, C_in, k, k] from coeffs [Q, C_in, F], H [Q, 2k, 2k], Rs.i [Q, Q]."""
    coeffs = sd[prefix + "coeffs"].double()
    basis = sd[prefix + "rotate_hermite.H"].double()
    inputs_per_rotation = coeffs.shape[1] // rotations
    rotated = []
    for i in range(rotations):
        c = torch.tensordot(sd[f"{prefix}rotate_hermite.Rs.{i}"].double(), coeffs, dims=([1], [0]))
        w = torch.tensordot(basis, c, dims=([0], [0]))  # [2k, 2k, C_in, F]
        if i and not first_layer:
            w = torch.roll(w, shifts=i * inputs_per_rotation, dims=2)
        rotated.append(w)
    w = torch.cat(rotated, dim=3)
    w = w[0::2, 0::2] + w[0::2, 1::2] + w[1::2, 0::2] + w[1::2, 1::2]
    return w.permute(3, 2, 0, 1)


def neuralpredictors_forward(sd, model, images, data_key):
    """Predictions [T, N] in stored units from state_dict.pt and model.json alone."""
    core = model["core"]["kwargs"]
    readout = model["readouts"][data_key]
    pre = readout["preprocessing"]
    roteq = model["core"]["class"].endswith("RotationEquivariant2dCore")
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    x = (torch.from_numpy(images).double() - pre["image_mean"]) / pre["image_std"]
    for l in range(core["layers"]):
        p = f"core.features.layer{l}."
        k = core["input_kern"] if l == 0 else core["hidden_kern"][l - 1]
        if roteq:
            pad = (k // 2 if core["pad_input"] else 0) if l == 0 else core["hidden_padding"]
            x = F.conv2d(x, hermite_weights(sd, p + "hermite_conv.", core["num_rotations"], l == 0), padding=pad)
        elif l == 0:
            x = F.conv2d(x, sd[p + "conv.weight"], padding=k // 2 if core["pad_input"] else 0)
        elif core.get("depth_separable"):
            ds = p + "ds_conv."
            x = F.conv2d(x, sd[ds + "in_depth_conv.weight"], sd[ds + "in_depth_conv.bias"])
            x = F.conv2d(x, sd[ds + "spatial_conv.weight"], sd[ds + "spatial_conv.bias"], padding=k // 2,
                         groups=x.shape[1])
            x = F.conv2d(x, sd[ds + "out_depth_conv.weight"], sd[ds + "out_depth_conv.bias"])
        else:
            x = F.conv2d(x, sd[p + "conv.weight"], sd[p + "conv.bias"], padding=k // 2)
        # RotationEquivariant2dCore(rot_eq_batch_norm=True): one batch norm per feature, over rotations and space
        norm = p + ("norm.batch_norm." if roteq else "norm.")
        shape = x.shape
        if roteq:
            r = core["num_rotations"]
            x = x.view(shape[0], r, shape[1] // r, shape[2], shape[3]).transpose(1, 2).reshape(shape[0], shape[1] // r, -1)
        x = F.batch_norm(x, sd[norm + "running_mean"], sd[norm + "running_var"], sd.get(norm + "weight"),
                         sd.get(norm + "bias"), training=False, eps=model["batchnorm_eps"])
        if roteq:
            x = x.view(shape[0], shape[1] // r, r, shape[2], shape[3]).transpose(1, 2).reshape(shape)
        if p + "bias.bias" in sd:  # the shift of a layer without scale
            b = sd[p + "bias.bias"]
            x = (x.view(shape[0], r, shape[1] // r, shape[2], shape[3]) + b).view(shape) if b.dim() == 5 else x + b
        if l < core["layers"] - 1 or core["final_nonlinearity"]:
            x = F.softplus(x) if core["nonlinearity_type"] == "SoftThreshold" else F.elu(x)
    p = f"readout.{data_key}."
    if readout["class"].endswith("FullFactorized2d"):
        spatial = sd[p + "spatial"].abs() if readout["kwargs"]["positive_spatial"] else sd[p + "spatial"]
        h = torch.einsum("bchw,nhw->bcn", x, spatial)
        h = torch.einsum("bcn,nc->bn", h, sd[p + "_features"]) + sd[p + "bias"]
    else:
        n = readout["kwargs"]["outdims"]
        if p + "_mu" in sd:
            mu = sd[p + "_mu"]
        else:
            mu = (sd[p + "source_grid"] @ sd[p + "mu_transform.0.weight"].T + sd[p + "mu_transform.0.bias"]).view(1, n, 1, 2)
        grid = mu.clamp(-1, 1).expand(x.shape[0], n, 1, 2)
        sample = F.grid_sample(x, grid, align_corners=True)  # [B, C, N, 1]
        h = torch.einsum("bcn,cn->bn", sample[..., 0], sd[p + "_features"][0, :, 0, :]) + sd[p + "bias"]
    y = F.softplus(h) if readout["output_nonlinearity"] == "softplus" else F.elu(h) + 1
    return (y * torch.tensor(pre["response_std"], dtype=torch.float64)).numpy()


def documented_shapes(model, n, in_shape):
    """Every key of the state_dict and its shape, as docs/formats.md lists them."""
    core = model["core"]["kwargs"]
    roteq = model["core"]["class"].endswith("RotationEquivariant2dCore")
    r = core.get("num_rotations", 1)
    shapes = {"core._input_weights_regularizer.laplace.filter": (1, 1, 3, 3)}
    c_prev = 1
    for l in range(core["layers"]):
        p = f"core.features.layer{l}."
        k = core["input_kern"] if l == 0 else core["hidden_kern"][l - 1]
        f = core["hidden_channels"][l]
        if roteq:
            q = k * (k + 1) // 2
            shapes[p + "hermite_conv.coeffs"] = (q, c_prev, f)
            shapes[p + "hermite_conv.rotate_hermite.H"] = (q, 2 * k, 2 * k)
            shapes.update({f"{p}hermite_conv.rotate_hermite.Rs.{i}": (q, q) for i in range(r)})
            c_out, bn, norm = r * f, f, p + "norm.batch_norm."  # rot_eq_batch_norm=True, checked in check()
        else:
            c_out, bn, norm = f, f, p + "norm."
            if l == 0:
                shapes[p + "conv.weight"] = (f, 1, k, k)
            elif core.get("depth_separable"):
                ds = p + "ds_conv."
                shapes.update({ds + "in_depth_conv.weight": (f, c_prev, 1, 1), ds + "in_depth_conv.bias": (f,),
                               ds + "spatial_conv.weight": (f, 1, k, k), ds + "spatial_conv.bias": (f,),
                               ds + "out_depth_conv.weight": (f, f, 1, 1), ds + "out_depth_conv.bias": (f,)})
            else:
                shapes.update({p + "conv.weight": (f, c_prev, k, k), p + "conv.bias": (f,)})
        shapes.update({norm + "running_mean": (bn,), norm + "running_var": (bn,), norm + "num_batches_tracked": ()})
        if core["batch_norm_scale"][l]:
            shapes.update({norm + "weight": (bn,), norm + "bias": (bn,)})
        else:
            shapes[p + "bias.bias"] = (1, 1, bn, 1, 1) if roteq else (1, bn, 1, 1)
        if core["nonlinearity_type"] == "SoftThreshold" and (l < core["layers"] - 1 or core["final_nonlinearity"]):
            shapes[p + "nonlin.zero"] = ()
        c_prev = c_out
    for key, readout in model["readouts"].items():
        p = f"readout.{key}."
        c, h, w = in_shape
        if readout["class"].endswith("FullFactorized2d"):
            shapes.update({p + "spatial": (n, h, w), p + "_features": (n, c), p + "bias": (n,)})
        else:
            shapes.update({p + "sigma": (1, n, 2, 2), p + "_features": (1, c, 1, n), p + "bias": (n,)})
            if "grid_mean_predictor" in readout["kwargs"]:
                shapes.update({p + "mu_transform.0.weight": (2, 2), p + "mu_transform.0.bias": (2,),
                               p + "source_grid": (n, 2)})
            else:
                shapes[p + "_mu"] = (1, n, 1, 2)
    return shapes


def neuralpredictors_modules(sd, model, data_key):
    """neuralpredictors' own core and readout, built from model.json and loaded strictly from the state_dict."""
    def build(spec, kwargs):
        module, name = spec["class"].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(**kwargs)
    core = build(model["core"], model["core"]["kwargs"])
    for m in core.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = model["batchnorm_eps"]
    core.load_state_dict({k[len("core."):]: v for k, v in sd.items() if k.startswith("core.")}, strict=True)
    spec = model["readouts"][data_key]
    prefix = f"readout.{data_key}."
    kwargs = dict(spec["kwargs"])
    if "source_grid" in kwargs:
        kwargs["source_grid"] = sd[prefix + "source_grid"].numpy()
    readout = build(spec, kwargs)
    readout.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    return core.eval(), readout.eval()


@unittest.skipIf(MISSING is not None, f"PyTorch / h5py / numpy not available: {MISSING}")
class ExportNeuralpredictors(unittest.TestCase):
    real_classes = False  # LoadsIntoNeuralpredictors: also neuralpredictors' own classes

    def test_cnn(self):
        self.check(NP_CNN, "Stacked2dCore", "FullFactorized2d")

    def test_roteq_rotation_shared_batch_norm(self):
        self.check(MODEL_ROTEQ, "RotationEquivariant2dCore", "FullFactorized2d")


    def test_stacked2d_gaussian(self):
        self.check(LURZ_MODEL, "Stacked2dCore", "FullGaussian2d")

    def test_stacked2d_gaussian_cortex_grid_predictor(self):
        self.check(NP_LURZ_CORTEX, "Stacked2dCore", "FullGaussian2d", cortex=True)

    def test_several_datasets_give_one_readout_per_data_key(self):
        with tempfile.TemporaryDirectory() as tmp:
            sets = {"left": (6, 4), "right": (4, 5)}  # data key: (neurons, seed)
            data = {k: os.path.join(tmp, f"{k}.h5") for k in sets}
            written = {k: write_dataset(data[k], np.random.default_rng(seed), neurons=n) for k, (n, seed) in sets.items()}
            model = os.path.join(tmp, "model.yaml")
            with open(model, "w") as f:
                f.write(LURZ_MODEL)
            exe, run, out = executable(), os.path.join(tmp, "run"), os.path.join(tmp, "np")
            subprocess.run([exe, "train", model, "--data", data["left"], "--data", data["right"], "--out", run,
                            "--quiet"], check=True)
            checkpoint = os.path.join(run, "checkpoint.h5")
            subprocess.run([exe, "export", checkpoint, "--format", "neuralpredictors", "--out", out], check=True)
            sd = torch.load(os.path.join(out, "state_dict.pt"))
            with open(os.path.join(out, "model.json")) as f:
                description = json.load(f)
            self.assertEqual(list(description["readouts"]), ["left", "right"])
            in_shape = description["readouts"]["left"]["kwargs"]["in_shape"]
            for key, (n, _) in sets.items():
                self.assertEqual(tuple(sd[f"readout.{key}._features"].shape), (1, in_shape[0], 1, n))
                images, tiers = written[key]
                pred = os.path.join(tmp, f"{key}_pred.h5")
                subprocess.run([exe, "predict", "--checkpoint", checkpoint, "--data", data[key], "--tier", "test",
                                "--out", pred], check=True)
                with h5py.File(pred, "r") as f:
                    predicted = f["predictions"][...]
                test_images = images[[i for i, t in enumerate(tiers) if t == "test"]]
                reference = neuralpredictors_forward(sd, description, test_images, key)
                self.assertLess(np.abs(predicted - reference).max(), 1e-4 * np.abs(reference).max())
                if self.real_classes:
                    core, readout = neuralpredictors_modules(sd, description, key)
                    pre = description["readouts"][key]["preprocessing"]
                    with torch.no_grad():
                        h = readout(core((torch.from_numpy(test_images) - pre["image_mean"]) / pre["image_std"]))
                    y = (F.elu(h) + 1).numpy() * np.array(pre["response_std"])
                    self.assertLess(np.abs(predicted - y).max(), 1e-4 * np.abs(y).max())

    def test_models_neuralpredictors_cannot_hold_are_refused_with_the_reason(self):
        # Mixed nonlinearities; a roteq core with per-channel batch norm (RotationEquivariant2dCore with
        # rot_eq_batch_norm=False builds BatchNorm2d(F) for a layer of R*F channels: found by loading into it).
        for model_text, field, fix in ((MODEL, "core.nonlinearities", "use the same nonlinearity"),
                                       (NP_ROTEQ_PER_CHANNEL, "core.batchnorm_shared_rotations", "rotation-shared")):
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint, _, _ = self.train(tmp, model_text)
                out = os.path.join(tmp, "np")
                run = subprocess.run([executable(), "export", checkpoint, "--format", "neuralpredictors", "--out",
                                      out], capture_output=True, text=True)
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertIn(field, run.stderr)
                self.assertIn(fix, run.stderr)
                self.assertFalse(os.path.exists(os.path.join(out, "state_dict.pt")))

    def test_existing_output_needs_force_and_a_non_checkpoint_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, _, _ = self.train(tmp, NP_CNN)
            out = os.path.join(tmp, "np")
            os.makedirs(out)
            with open(os.path.join(out, "state_dict.pt"), "w") as f:
                f.write("the user's file")
            command = [executable(), "export", checkpoint, "--format", "neuralpredictors", "--out", out]
            run = subprocess.run(command, capture_output=True, text=True)
            self.assertEqual(run.returncode, 3, run.stderr)
            self.assertIn("--force", run.stderr)
            with open(os.path.join(out, "state_dict.pt")) as f:
                self.assertEqual(f.read(), "the user's file")
            subprocess.run(command + ["--force"], check=True, capture_output=True)
            self.assertIn("core.features.layer0.conv.weight", torch.load(os.path.join(out, "state_dict.pt")))
            data = os.path.join(tmp, "tiny.h5")
            run = subprocess.run([executable(), "export", data, "--format", "neuralpredictors", "--out",
                                  os.path.join(tmp, "np2")], capture_output=True, text=True)
            self.assertEqual(run.returncode, 3, run.stderr)
            self.assertIn("not a v1sysid checkpoint", run.stderr)
            # Without the script or the interpreter: an error that says where and how to fix it, nothing written.
            fresh = os.path.join(tmp, "np3")
            for variable, value, says in (("V1SYSID_ANALYSIS_DIR", tmp, "set V1SYSID_ANALYSIS_DIR"),
                                          ("V1SYSID_PYTHON", os.path.join(tmp, "no-python"), "V1SYSID_PYTHON")):
                run = subprocess.run([executable(), "export", checkpoint, "--format", "neuralpredictors", "--out",
                                      fresh], capture_output=True, text=True, env={**os.environ, variable: value})
                self.assertEqual(run.returncode, 3, run.stderr)
                self.assertIn(says, run.stderr)
                self.assertFalse(os.path.exists(fresh))

    def train(self, tmp, model_text, cortex=False):
        data = os.path.join(tmp, "tiny.h5")
        images, tiers = write_dataset(data, np.random.default_rng(4), cortex=cortex)
        model = os.path.join(tmp, "model.yaml")
        with open(model, "w") as f:
            f.write(model_text)
        out = os.path.join(tmp, "run")
        subprocess.run([executable(), "train", model, "--data", data, "--out", out, "--quiet"], check=True)
        test_rows = [i for i, t in enumerate(tiers) if t == "test"]
        return os.path.join(out, "checkpoint.h5"), images[test_rows], data

    def check(self, model_text, core_class, readout_class, cortex=False):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, images, data = self.train(tmp, model_text, cortex)
            exe = executable()
            pred = os.path.join(tmp, "pred.h5")
            subprocess.run([exe, "predict", "--checkpoint", checkpoint, "--data", data, "--tier", "test",
                            "--out", pred], check=True)
            with h5py.File(pred, "r") as f:
                predicted = f["predictions"][...]
            out = os.path.join(tmp, "np")
            subprocess.run([exe, "export", checkpoint, "--format", "neuralpredictors", "--out", out], check=True)
            sd = torch.load(os.path.join(out, "state_dict.pt"))
            with open(os.path.join(out, "model.json")) as f:
                model = json.load(f)
            self.assertEqual(model["core"]["class"], "neuralpredictors.layers.cores." + core_class)
            self.assertEqual([r["class"] for r in model["readouts"].values()],
                             ["neuralpredictors.layers.readouts." + readout_class])
            self.assertEqual(list(model["readouts"]), ["tiny"])  # the data key of tiny.h5
            in_shape = model["readouts"]["tiny"]["kwargs"]["in_shape"]
            shapes = {k: tuple(v.shape) for k, v in sd.items()}
            self.assertEqual(shapes, documented_shapes(model, predicted.shape[1], in_shape))
            with h5py.File(checkpoint, "r") as f:
                self.assertEqual(model["batchnorm_eps"], float(f["export/layer0"].attrs["bn_eps"]))
                if core_class == "RotationEquivariant2dCore":  # the synthesis of the doc gives training's filters
                    self.assertTrue(model["core"]["kwargs"]["rot_eq_batch_norm"])
                    for l in range(model["core"]["kwargs"]["layers"]):
                        w = hermite_weights(sd, f"core.features.layer{l}.hermite_conv.",
                                            model["core"]["kwargs"]["num_rotations"], l == 0).numpy()
                        exported = f[f"export/layer{l}/weight"][...]
                        self.assertLess(np.abs(w - exported).max(), 1e-5 * np.abs(exported).max())
            reference = neuralpredictors_forward(sd, model, images, "tiny")
            scale = np.abs(reference).max()
            self.assertGreater(scale, 0)
            err = np.abs(predicted - reference) / np.maximum(np.abs(reference), 1e-3 * scale)
            print(f"neuralpredictors export ({core_class} + {readout_class}) vs predict: max relative error "
                  f"{err.max():.2e} over {reference.size} predictions")
            self.assertLess(err.max(), 1e-4)
            if self.real_classes:
                core, readout = neuralpredictors_modules(sd, model, "tiny")
                pre = model["readouts"]["tiny"]["preprocessing"]
                with torch.no_grad():
                    h = readout(core((torch.from_numpy(images) - pre["image_mean"]) / pre["image_std"]))
                output = model["readouts"]["tiny"]["output_nonlinearity"]
                y = (F.softplus(h) if output == "softplus" else F.elu(h) + 1).numpy() * np.array(pre["response_std"])
                err = np.abs(predicted - y) / np.maximum(np.abs(y), 1e-3 * scale)
                print(f"neuralpredictors' {core_class} + {readout_class} (float32) vs predict: max relative error "
                      f"{err.max():.2e}")
                self.assertLess(err.max(), 1e-4)


@unittest.skipIf(MISSING is not None or NEURALPREDICTORS_MISSING is not None,
                 f"neuralpredictors not importable: {NEURALPREDICTORS_MISSING}")
class LoadsIntoNeuralpredictors(ExportNeuralpredictors):
    """The same exports loaded with load_state_dict(strict=True) into neuralpredictors' classes."""
    real_classes = True


if __name__ == "__main__":
    unittest.main()
