#!/usr/bin/env python3
"""A v1sysid checkpoint as a state_dict that neuralpredictors' own classes load (docs/formats.md, section
"neuralpredictors export"), plus the constructor arguments that build those classes.

    v1sysid export --format neuralpredictors CHECKPOINT --out DIR [--force]    (runs this script)
    python3 analysis/export_neuralpredictors.py CHECKPOINT --out DIR [--force]

writes DIR/state_dict.pt (torch.save of an OrderedDict: `core.*` and `readout.<data_key>.*`) and DIR/model.json
(classes, constructor arguments, what a user sets after construction, preprocessing). Names and shapes are those
of neuralpredictors at a2055cd (sinzlab/neuralpredictors HEAD, the version read for this mapping):

    cnn       -> Stacked2dCore                 roteq   -> RotationEquivariant2dCore
    stacked2d -> Stacked2dCore(depth_separable=True)
    factorized -> FullFactorized2d             gaussian -> FullGaussian2d (cortex grid predictor: mu_transform)

one readout per data key, as neuralpredictors' MultiReadout classes (a ModuleDict keyed by data key) hold them.
Only the forward pass and the parameters are mapped; the Ecker regularisers (smoothness normalised per filter,
group sparsity, joint L1 of the mask) have no neuralpredictors counterpart for the cores and are listed under
`not_mapped`. Errors name the file, the field and the fix; exit 2 (a model neuralpredictors cannot express),
3 (unreadable checkpoint, output exists), 4 (a damaged checkpoint), 7 (disk full).
"""
import argparse
import collections
import errno
import json
import math
import os
import sys

import numpy as np

NEURALPREDICTORS_VERSION = "a2055cd"
UPSAMPLING = 2  # Hermite filters are synthesised at twice the resolution, then summed 2x2 (reference-models §1.2)


class ExportError(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def text(value):
    return value.decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


def f32(a):
    """A C-ordered float32 copy (np.array keeps 0-d arrays 0-d, np.ascontiguousarray would make them [1])."""
    return np.array(a, dtype=np.float32, order="C")


# --- Hermite basis (reference-models.md §1.1), for the buffers HermiteConv2D keeps in its state_dict ---------

def hermite_basis(filter_size):
    """(H [Q, 2k, 2k] float64, desc, mu): the basis HermiteConv2D builds for a k x k filter."""
    npts = filter_size * UPSAMPLING
    extent = 2 * math.sqrt(filter_size) * (1 - 1 / npts)
    xs = np.linspace(-extent, extent, npts)
    y, x = xs[:, None], xs[None, :]  # row a <-> y = xs[a], column b <-> x = xs[b]
    theta, rho_sq = np.arctan2(y, x), x ** 2 + y ** 2
    envelope = np.exp(-rho_sq / 4)
    bases, descs, mus = [], [], []
    for rank in range(filter_size):
        orders = sorted(abs(m) for m in range(-rank, rank + 1, 2))
        descs += (["z"] if rank % 2 == 0 else []) + ["r", "i"] * ((rank + 1) // 2)
        for mu in orders:
            nu = (rank - mu) // 2
            coeff = [math.gamma(mu + nu + 1) * math.gamma(nu + 1) * (-2.0) ** (nu - k)
                     / (math.gamma(mu + 1 + k) * math.gamma(k + 1) * math.gamma(nu + 1 - k)) for k in range(nu + 1)]
            radial = sum(c * rho_sq ** k for k, c in enumerate(coeff))
            b = envelope * rho_sq ** (mu / 2) * radial * np.exp(1j * mu * theta)
            bases.append(b / math.sqrt(2 ** (mu + 2 * nu) * math.pi * math.factorial(mu + nu) * math.factorial(nu)))
            mus.append(mu)
    images = []
    for b, d in zip(bases, descs):
        images.append(b.real / math.sqrt(2) if d == "z" else (b.real if d == "r" else b.imag))
    h = np.stack(images)
    return h / np.sqrt((h ** 2).sum(axis=(1, 2), keepdims=True)), descs, mus


def rotation_matrix(descs, mus, angle):
    """Block-diagonal rotation of Hermite coefficients by `angle` (reference-models.md §1.1)."""
    r = np.zeros((len(descs), len(descs)))
    for i, (d, m) in enumerate(zip(descs, mus)):
        if d == "z":
            r[i, i] = 1
        elif d == "r":
            c, s = math.cos(m * angle), math.sin(m * angle)
            r[i:i + 2, i:i + 2] = [[c, s], [-s, c]]
    return r


# --- checkpoint ----------------------------------------------------------------------------------------------

class Checkpoint:
    def __init__(self, path):
        import h5py
        import yaml
        self.path = path
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ExportError(f"{path}: cannot be read as HDF5 ({e}); pass the checkpoint.h5 written by "
                              "'v1sysid train' or 'v1sysid sweep --save-checkpoints'", 3)
        with f:
            kind = text(f.attrs.get("kind", ""))
            if kind == "v1sysid ensemble":
                raise ExportError(f"{path}: an ensemble (kind 'v1sysid ensemble'), which neuralpredictors has no "
                                  "class for; export each member checkpoint it lists", 2)
            if kind != "v1sysid checkpoint" or int(f.attrs.get("format_version", -1)) != 1:
                raise ExportError(f"{path}: root attribute kind is '{kind}' (format_version "
                                  f"{f.attrs.get('format_version')}), not a v1sysid checkpoint of format 1; pass "
                                  "the checkpoint.h5 written by 'v1sysid train'", 3)
            try:
                self.config = yaml.safe_load(text(f.attrs["config"]))
                self.height, self.width = int(f.attrs["height"]), int(f.attrs["width"])
                self.params = {}
                f["params"].visititems(lambda name, obj: self.params.__setitem__(name, obj[()])
                                       if isinstance(obj, h5py.Dataset) else None)
                self.steps = int(f["training"].attrs.get("steps", 0)) if "training" in f else 0
                self.dataset = text(f.attrs.get("dataset", ""))
                if "readouts/data_keys" in f:
                    self.data_keys = [text(k) for k in f["readouts/data_keys"][...]]
                    self.preprocessing = {k: read_preprocessing(f[f"readouts/{k}/preprocessing"], f["preprocessing"])
                                          for k in self.data_keys}
                else:
                    self.data_keys = [None]
                    self.preprocessing = {None: read_preprocessing(f["preprocessing"], f["preprocessing"])}
            except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
                raise ExportError(f"{path}: damaged or incomplete checkpoint ({e}); train the model again", 4)

    def param(self, name):
        if name not in self.params:
            raise ExportError(f"{self.path}: params/{name} is missing; the checkpoint is damaged or was written by "
                              "another version of v1sysid (train the model again)", 4)
        return self.params[name]


def read_preprocessing(group, root):
    pre = {"response_std": [float(v) for v in group["response_std"][...]]}
    for name in ("image_mean", "image_std"):
        pre[name] = float((group[name] if name in group else root[name])[()])
    if "neuron_indices" in group:
        pre["neuron_indices"] = [int(v) for v in group["neuron_indices"][...]]
    return pre


# --- core ----------------------------------------------------------------------------------------------------

SOFTPLUS_CLASS = "SoftThreshold"  # neuralpredictors.layers.activations: logaddexp(x, 0) = softplus(x)
ELU_CLASS = "AdaptiveELU"         # ELU(x - 0) + 0


def nonlinearity_arguments(ckpt, nonlinearities):
    """neuralpredictors has one nonlinearity for all layers and final_nonlinearity for the last."""
    hidden, last = nonlinearities[:-1], nonlinearities[-1]
    kinds = set(hidden) | ({last} if last != "none" else set())
    if "none" in hidden or len(kinds) > 1:
        raise ExportError(f"{ckpt.path}: core.nonlinearities {nonlinearities} cannot be expressed in "
                          "neuralpredictors, whose cores apply one nonlinearity after every layer (the last may "
                          "have none); use the same nonlinearity on every layer but the last", 2)
    kind = kinds.pop() if kinds else "elu"
    return {"nonlinearity_type": SOFTPLUS_CLASS if kind == "softplus" else ELU_CLASS,
            "final_nonlinearity": last != "none"}


def norm_and_nonlinearity_entries(ckpt, l, scale, rotations_shared, kwargs):
    """State of layer l after its conv: the BatchNorm (without scale neuralpredictors holds the shift in a separate
    bias layer) and, for SoftThreshold, the nonlinearity's `zero` buffer."""
    prefix, slot = f"features.layer{l}", f"core/layer{l}/"
    norm = f"{prefix}.norm.batch_norm" if rotations_shared else f"{prefix}.norm"
    beta = ckpt.param(f"{slot}bn_beta")
    state = collections.OrderedDict()
    if scale:
        state[f"{norm}.weight"] = f32(ckpt.param(f"{slot}bn_gamma"))
        state[f"{norm}.bias"] = f32(beta)
    state[f"{norm}.running_mean"] = f32(ckpt.param(f"{slot}bn_running_mean"))
    state[f"{norm}.running_var"] = f32(ckpt.param(f"{slot}bn_running_var"))
    state[f"{norm}.num_batches_tracked"] = np.array(ckpt.steps, dtype=np.int64)
    if not scale:
        shape = (1, 1, beta.size, 1, 1) if rotations_shared else (1, beta.size, 1, 1)
        state[f"{prefix}.bias.bias"] = f32(beta).reshape(shape)
    if kwargs["nonlinearity_type"] == SOFTPLUS_CLASS and (l < kwargs["layers"] - 1 or kwargs["final_nonlinearity"]):
        state[f"{prefix}.nonlin.zero"] = f32(0)
    return state


def core_export(ckpt):
    """(state_dict entries under core., class name, constructor keyword arguments, not_mapped notes)."""
    c = ckpt.config["core"]
    kind, ks, layers = c["kind"], [int(k) for k in c["filter_sizes"]], len(c["filter_sizes"])
    scale = [bool(s) for s in c["batchnorm_scale"]]
    padding = c["padding"]
    kwargs = {"input_channels": 1, "input_kern": ks[0], "hidden_kern": ks[1:], "layers": layers,
              "pad_input": padding == "same", "bias": True, "batch_norm": True, "batch_norm_scale": scale,
              "momentum": 1.0 - float(c["batchnorm_decay"]), "stack": -1, "gamma_input": 0.0, "gamma_hidden": 0.0}
    kwargs.update(nonlinearity_arguments(ckpt, list(c["nonlinearities"])))
    not_mapped = []
    if float(c.get("smooth_weight", 0)) or float(c.get("sparse_weight", 0)):
        not_mapped.append(f"core smooth_weight {c['smooth_weight']} / sparse_weight {c['sparse_weight']} "
                          f"(rel_smooth {c['rel_smooth']}, rel_sparse {c['rel_sparse']}): Ecker's smoothness "
                          "(normalised per output filter) and group sparsity have no neuralpredictors counterpart")
    hidden = sorted(set(ks[1:]))
    # The cores keep their input regulariser as a submodule; its Laplace filter is a buffer of the state_dict.
    state = collections.OrderedDict([("_input_weights_regularizer.laplace.filter",
                                      np.array([[[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]]], dtype=np.float32))])
    kwargs["input_regularizer"] = "LaplaceL2norm"
    if kind == "roteq":
        rotations = int(c["rotations"])
        features = [int(f) for f in c["features"]]
        if not c["batchnorm_shared_rotations"]:
            raise ExportError(f"{ckpt.path}: core.batchnorm_shared_rotations is false (batch norm per channel, as the "
                              "paper's runs): RotationEquivariant2dCore(rot_eq_batch_norm=False) builds its batch norm "
                              "for F channels, not the R*F the layer has, so neuralpredictors cannot hold this model; "
                              "only rotation-shared batch norm (batchnorm_shared_rotations: true) can be exported", 2)
        if padding == "same" and len(hidden) > 1:
            raise ExportError(f"{ckpt.path}: core.filter_sizes {ks}: RotationEquivariant2dCore pads every hidden "
                              "layer by the first hidden kernel's k//2, so hidden layers of different sizes cannot "
                              "be SAME; use one hidden filter size", 2)
        kwargs.update({"hidden_channels": features, "num_rotations": rotations, "upsampling": UPSAMPLING,
                       "rot_eq_batch_norm": True,
                       "init_std": float(c["coeff_init_sd"]),
                       "hidden_padding": (hidden[0] // 2 if hidden else 0) if padding == "same" else 0})
        for l in range(layers):
            conv = f"features.layer{l}.hermite_conv"
            state[f"{conv}.coeffs"] = f32(ckpt.param(f"core/layer{l}/coeffs"))  # [Q, C_in, F]
            basis, descs, mus = hermite_basis(ks[l])
            state[f"{conv}.rotate_hermite.H"] = f32(basis)
            for i in range(rotations):
                state[f"{conv}.rotate_hermite.Rs.{i}"] = f32(rotation_matrix(descs, mus, i * 2 * math.pi / rotations))
            state.update(norm_and_nonlinearity_entries(ckpt, l, scale[l], True, kwargs))
        return state, "neuralpredictors.layers.cores.RotationEquivariant2dCore", kwargs, not_mapped

    channels = [int(ch) for ch in c["channels"]]
    kwargs["hidden_channels"] = channels
    if kind == "stacked2d":
        # v1sysid's Laplace term pads the filters with one zero, neuralpredictors' default laplace_padding is 0.
        kwargs.update({"depth_separable": True, "use_avg_reg": False, "laplace_padding": 1,
                       "gamma_input": float(c.get("laplace_weight", 0.0))})
    elif padding != "same" and layers > 1:
        raise ExportError(f"{ckpt.path}: core.padding valid: neuralpredictors' Stacked2dCore pads hidden layers "
                          "SAME whatever hidden_padding=0 says (0 counts as unset); only padding: same cnn cores "
                          "with more than one layer can be exported", 2)
    for l in range(layers):
        prefix, slot = f"features.layer{l}", f"core/layer{l}/"
        weight = f32(ckpt.param(f"{slot}weight"))
        zeros = np.zeros(channels[l], dtype=np.float32)
        if l == 0:
            state[f"{prefix}.conv.weight"] = weight
        elif kind == "stacked2d":
            # Stacked2dCore passes its per-layer bias list to the hidden convs, and a non-empty list is true:
            # every hidden conv of neuralpredictors has a bias. v1sysid's have none, so they are zero.
            ds = f"{prefix}.ds_conv"
            state[f"{ds}.in_depth_conv.weight"] = f32(ckpt.param(f"{slot}pointwise_in"))
            state[f"{ds}.in_depth_conv.bias"] = zeros
            state[f"{ds}.spatial_conv.weight"] = f32(ckpt.param(f"{slot}depthwise"))
            state[f"{ds}.spatial_conv.bias"] = zeros.copy()
            state[f"{ds}.out_depth_conv.weight"] = weight
            state[f"{ds}.out_depth_conv.bias"] = zeros.copy()
        else:
            state[f"{prefix}.conv.weight"] = weight
            state[f"{prefix}.conv.bias"] = zeros
        state.update(norm_and_nonlinearity_entries(ckpt, l, scale[l], False, kwargs))
    return state, "neuralpredictors.layers.cores.Stacked2dCore", kwargs, not_mapped


def core_output_shape(config, height, width):
    c = config["core"]
    channels = (int(c["rotations"]) * int(c["features"][-1])) if c["kind"] == "roteq" else int(c["channels"][-1])
    for l, k in enumerate(c["filter_sizes"]):
        valid = c["padding"] == "valid" and (l == 0 or c["kind"] != "stacked2d")
        if valid:
            height, width = height - (int(k) - 1), width - (int(k) - 1)
    return [channels, height, width]


# --- readout -------------------------------------------------------------------------------------------------

def readout_export(ckpt, key, in_shape):
    r = ckpt.config["readout"]
    slot = "readout/" if key is None else f"readout/{key}/"
    state = collections.OrderedDict()
    not_mapped = []
    bias = ckpt.param(f"{slot}bias")
    n = int(bias.size)
    if r["kind"] == "factorized":
        features = ckpt.param(f"{slot}features")
        positive = bool(r["positive_features"])
        # v1sysid uses |M~| and, for positive features, |F~|; FullFactorized2d takes abs of the mask
        # (positive_spatial) but clamps negative features (positive_weights), so those are stored as |F~|.
        state["spatial"] = f32(ckpt.param(f"{slot}mask"))
        state["_features"] = f32(np.abs(features) if positive else features)
        state["bias"] = f32(bias)
        kwargs = {"in_shape": in_shape, "outdims": n, "bias": True, "normalize": False, "positive_spatial": True,
                  "positive_weights": positive, "constrain_pos": False, "init_noise": 0.01}
        if r["regularizer"] == "joint_l1":
            kwargs["spatial_and_feature_reg_weight"] = float(r["weight"])
        else:
            kwargs["spatial_and_feature_reg_weight"] = 0.0
            not_mapped.append(f"readout regularizer {r['regularizer']} (mask_weight {r['mask_weight']}, "
                              f"feature_weight {r['feature_weight']}): FullFactorized2d has only the joint L1")
        return state, "neuralpredictors.layers.readouts.FullFactorized2d", kwargs, "softplus", not_mapped
    # FullGaussian2d: sigma [1, N, 2, 2] with position_i = mu_i + sum_j sigma[0, n, i, j] z_j, as v1sysid's Sigma;
    # features [1, C, 1, N]; mu [1, N, 1, 2] (x, y), or mu = source_grid A^T + a through mu_transform.0.
    kwargs = {"in_shape": in_shape, "outdims": n, "bias": True, "init_mu_range": float(r["init_mu_range"]),
              "init_sigma": float(r["init_sigma"]), "batch_sample": True, "align_corners": True,
              "gauss_type": "full", "feature_reg_weight": float(r["feature_weight"])}
    if r["grid_predictor"] == "cortex":
        state["mu_transform.0.weight"] = f32(ckpt.param(f"{slot}grid_A"))
        state["mu_transform.0.bias"] = f32(ckpt.param(f"{slot}grid_a"))
        state["source_grid"] = f32(ckpt.param(f"{slot}grid_coords"))
        kwargs["grid_mean_predictor"] = {"hidden_layers": 0, "final_tanh": False}
        kwargs["source_grid"] = "state_dict: readout.<data_key>.source_grid (or neurons/cell_motor_coordinates[:, :2])"
    else:
        state["_mu"] = f32(ckpt.param(f"{slot}mu")).reshape(1, n, 1, 2)
    state["sigma"] = f32(ckpt.param(f"{slot}sigma")).reshape(1, n, 2, 2)
    state["_features"] = f32(ckpt.param(f"{slot}features").T).reshape(1, in_shape[0], 1, n)
    state["bias"] = f32(bias)
    return state, "neuralpredictors.layers.readouts.FullGaussian2d", kwargs, "elu_plus_one", not_mapped


def data_key_from_path(path):
    """The data key v1sysid gives a dataset (src/data/dataset.cpp): the name after 'static' up to the first
    dot, without 'preproc' (neuralpredictors' convention), else the file stem; 'default' without a path."""
    name = os.path.basename(path.rstrip("/"))
    if name.startswith("static") and len(name) > len("static"):
        key = name[len("static"):].split(".")[0].replace("preproc", "")
        if key:
            return key
    return os.path.splitext(name)[0] or "default"


# --- output --------------------------------------------------------------------------------------------------

def export(checkpoint, out_dir, force):
    import torch
    ckpt = Checkpoint(checkpoint)
    for section in ("core", "readout"):
        if not isinstance(ckpt.config, dict) or section not in ckpt.config:
            raise ExportError(f"{checkpoint}: the config attribute has no {section} section; train the model again", 4)
    core_state, core_class, core_kwargs, not_mapped = core_export(ckpt)
    in_shape = core_output_shape(ckpt.config, ckpt.height, ckpt.width)
    state = collections.OrderedDict((f"core.{k}", v) for k, v in core_state.items())
    readouts = {}
    for key in ckpt.data_keys:
        r_state, r_class, r_kwargs, output, r_notes = readout_export(ckpt, key, in_shape)
        name = key if key is not None else data_key_from_path(ckpt.dataset)
        state.update((f"readout.{name}.{k}", v) for k, v in r_state.items())
        readouts[name] = {"class": r_class, "kwargs": r_kwargs, "output_nonlinearity": output,
                          "preprocessing": ckpt.preprocessing[key]}
        not_mapped += [n for n in r_notes if n not in not_mapped]
    description = {
        "format": "v1sysid neuralpredictors export", "format_version": 1,
        "neuralpredictors": NEURALPREDICTORS_VERSION, "checkpoint": os.path.abspath(checkpoint),
        "input_shape": [1, ckpt.height, ckpt.width],
        "core": {"class": core_class, "kwargs": core_kwargs},
        "readouts": readouts,
        "batchnorm_eps": float(ckpt.config["core"]["batchnorm_eps"]),
        "after_construction": [
            "set eps = batchnorm_eps on every torch.nn.BatchNorm1d/2d of the core (neuralpredictors' cores take "
            "no eps argument and use PyTorch's 1e-5)",
            "load the state_dict: core.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith('core.')}), "
            "each readout from the keys under readout.<data_key>. (a MultiReadout ModuleDict takes them as "
            "'<data_key>.<name>')",
            "the readout output h is not yet a rate: apply output_nonlinearity (softplus: F.softplus(h); "
            "elu_plus_one: F.elu(h) + 1) and multiply by preprocessing.response_std for stored response units",
            "images: (image - image_mean) / image_std before the core",
        ],
        "not_mapped": not_mapped,
    }
    tensors = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state.items())
    if os.path.exists(out_dir) and os.listdir(out_dir) and not force:
        raise ExportError(f"{out_dir} exists and is not empty; pass --force to replace state_dict.pt and model.json "
                          "in it, or choose another --out", 3)
    try:
        os.makedirs(out_dir, exist_ok=True)
        partial = [os.path.join(out_dir, f"{name}.partial-{os.getpid()}") for name in ("state_dict.pt", "model.json")]
        torch.save(tensors, partial[0])
        with open(partial[1], "w") as f:
            json.dump(description, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        for p in partial:
            if os.path.getsize(p) == 0:
                raise OSError(errno.EIO, "written file is empty", p)
        os.replace(partial[0], os.path.join(out_dir, "state_dict.pt"))
        os.replace(partial[1], os.path.join(out_dir, "model.json"))
    except (OSError, RuntimeError) as e:
        for p in partial if "partial" in locals() else []:
            if os.path.exists(p):
                os.remove(p)
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
        full = full or "No space left" in str(e) or "file write failed" in str(e)
        raise ExportError(f"{out_dir}: writing the export failed ({e}); "
                          + ("free disk space and run the command again" if full else "check the folder"),
                          7 if full else 3)
    return state, description


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="folder for state_dict.pt and model.json")
    parser.add_argument("--force", action="store_true", help="replace state_dict.pt and model.json in --out")
    args = parser.parse_args(argv)
    try:
        state, description = export(args.checkpoint, args.out, args.force)
    except ExportError as e:
        print(f"export_neuralpredictors.py: error: {e}", file=sys.stderr)
        return e.code
    except (KeyError, TypeError) as e:  # a resolved config always has every field: this one was edited or damaged
        print(f"export_neuralpredictors.py: error: {args.checkpoint}: the checkpoint's config attribute has no valid "
              f"field {e}; train the model again (v1sysid writes every field)", file=sys.stderr)
        return 4
    except ImportError as e:
        print(f"export_neuralpredictors.py: error: {e}; install python3-torch, python3-h5py and python3-yaml "
              "(env/install-deps.sh with V1SYSID_WITH_TORCH=1)", file=sys.stderr)
        return 3
    print(f"wrote {os.path.join(args.out, 'state_dict.pt')} ({len(state)} tensors: "
          f"{description['core']['class'].rsplit('.', 1)[1]} + "
          f"{', '.join(r['class'].rsplit('.', 1)[1] + ' ' + k for k, r in description['readouts'].items())}) "
          f"and {os.path.join(args.out, 'model.json')}")
    for note in description["not_mapped"]:
        print(f"not mapped: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
