"""A PyTorch module built from a v1sysid checkpoint's export/ group (docs/formats.md), for users who continue
in PyTorch: most-exciting-input optimisation, in-silico experiments, fine-tuning.

    from torch_model import load_model
    model = load_model("checkpoint.h5")           # torch.nn.Module in evaluation mode, float64 by default
    y = model(images)                              # images [B, 1, H, W] or [B, H, W], grey levels as stored
                                                   # -> predictions [B, N] in the units of the stored responses

Core: per export/layer{i}: conv2d (no bias, stride 1, `padding` same / valid / int, `groups`), batch norm in
evaluation mode when the layer has bn_mean (bn_gamma ones where the layer has no scale), then the
nonlinearity (softplus, elu or none). Readout (export/readout, attribute `kind`):
  factorized: h[b,n] = sum_{c,y,x} x[b,c,y,x] mask[n,y,x] features[n,c] + bias[n]
  gaussian:   h[b,n] = sum_c features[n,c] * grid_sample(x, mu[n])[b,c] + bias[n]   (bilinear, zeros padding,
              align_corners=True, mu = (x, y) in [-1, 1]; sigma [N, 2, 2] is only used in training and kept as
              a buffer)
Output: softplus(h) or ELU(h) + 1 (`output_nonlinearity`), times response_std unless stored_units=False.
A model trained on several datasets exports one readout per dataset (export/readouts/<key>/, response scales
in readouts/<key>/preprocessing/): load_model(path, data_key="...") builds the core with that readout; without
data_key (or with an unknown one) it raises a ValueError listing the keys. Needs v1analysis.py (same folder).
"""
import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from v1analysis import export_readout


def _text(value):
    return value.decode() if isinstance(value, (bytes, np.bytes_)) else str(value)


class ExportedModel(nn.Module):
    def __init__(self, export, readout, preprocessing, dtype=torch.float64):
        super().__init__()
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)
        pre = preprocessing
        self.register_buffer("image_mean", t(pre["image_mean"][()]))
        self.register_buffer("image_std", t(pre["image_std"][()]))
        self.register_buffer("response_std", t(pre["response_std"][...]))
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.nonlinearities = []
        for i in range(int(export.attrs["num_layers"])):
            g = export[f"layer{i}"]
            w = t(g["weight"][...])
            groups = int(g.attrs.get("groups", 1))
            padding = _text(g.attrs.get("padding", "same"))
            pad = w.shape[-1] // 2 if padding == "same" else (0 if padding == "valid" else int(padding))
            conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[-1], padding=pad, groups=groups, bias=False)
            conv.weight = nn.Parameter(w)
            self.convs.append(conv)
            if "bn_mean" in g:
                bn = nn.BatchNorm2d(w.shape[0], eps=float(g.attrs["bn_eps"]))
                bn.running_mean = t(g["bn_mean"][...])
                bn.running_var = t(g["bn_var"][...])
                bn.weight = nn.Parameter(t(g["bn_gamma"][...]) if "bn_gamma" in g else torch.ones(w.shape[0], dtype=dtype))
                bn.bias = nn.Parameter(t(g["bn_beta"][...]))
                self.norms.append(bn)
            else:
                self.norms.append(nn.Identity())
            nl = _text(g.attrs.get("nonlinearity", "none"))
            if nl not in ("softplus", "elu", "none"):
                raise ValueError(f"export/layer{i}: unknown nonlinearity '{nl}'")
            self.nonlinearities.append(nl)
        r = readout
        self.kind = _text(r.attrs.get("kind", "factorized"))
        self.output_nonlinearity = _text(r.attrs.get("output_nonlinearity", "softplus"))
        if self.output_nonlinearity not in ("softplus", "elu_plus_one"):
            raise ValueError(f"export/readout: unknown output_nonlinearity '{self.output_nonlinearity}'")
        self.features = nn.Parameter(t(r["features"][...]))  # [N, C]
        self.bias = nn.Parameter(t(r["bias"][...]))          # [N]
        if self.kind == "factorized":
            self.mask = nn.Parameter(t(r["mask"][...]))       # [N, H', W'], non-negative
        elif self.kind == "gaussian":
            self.mu = nn.Parameter(t(r["mu"][...]))           # [N, 2] (x, y) in [-1, 1]
            self.register_buffer("sigma", t(r["sigma"][...]))  # [N, 2, 2]
        else:
            raise ValueError(f"export/readout: unknown kind '{self.kind}'")
        self.to(dtype)
        self.eval()

    def core(self, images):
        x = images if images.dim() == 4 else images.unsqueeze(1)
        x = (x.to(self.image_mean.dtype) - self.image_mean) / self.image_std
        for conv, norm, nl in zip(self.convs, self.norms, self.nonlinearities):
            x = norm(conv(x))
            if nl == "softplus":
                x = F.softplus(x)
            elif nl == "elu":
                x = F.elu(x)
        return x

    def readout(self, x):
        if self.kind == "factorized":
            return torch.einsum("bchw,nhw,nc->bn", x, self.mask, self.features) + self.bias
        grid = self.mu.clamp(-1, 1).view(1, -1, 1, 2).expand(x.shape[0], -1, -1, -1)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # [B, C, N, 1]
        return torch.einsum("bcn,nc->bn", sampled[..., 0], self.features) + self.bias

    def forward(self, images, stored_units=True):
        h = self.readout(self.core(images))
        y = F.softplus(h) if self.output_nonlinearity == "softplus" else F.elu(h) + 1
        return y * self.response_std if stored_units else y


def load_model(path, dtype=torch.float64, data_key=None):
    """The model of a checkpoint.h5 (or any HDF5 file with an export/ group), in evaluation mode; data_key
    picks the readout of a model trained on several datasets."""
    with h5py.File(path, "r") as f:
        readout, preprocessing, _ = export_readout(f, data_key, path)
        return ExportedModel(f["export"], readout, preprocessing, dtype=dtype)
