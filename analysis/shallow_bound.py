#!/usr/bin/python3
"""Shallow bound of a digital V1: the fraction of the ceiling that a model with no learned core reaches.

    /usr/bin/python3 analysis/shallow_bound.py DATA.h5 [--json] [--by-type] [--out DATA.shallow_bound.json]

DATA.h5 is a dataset written by `v1sysid simulate` (StaticImageSet layout with gt/). The model (docs/shallow-bound.md):
  images    z-scored with the pixel mean and SD (ddof 0) of the training tier's images, as the simulator does
  bank      a FIXED bank, nothing learned: Gabor quadrature pairs at 8 orientations x 4 wavelengths, log-spaced
            over the range of gt/wavelength_px, isotropic envelope SD 0.4 x wavelength, DC removed within the
            envelope, unit L2 norm; 3 zero-mean DoGs (centre SD 1.25, 2.5, 5 px, surround 2 x centre)
  features  read out at each neuron's TRUE RF centre (gt/position, bilinear): per orientation and wavelength
            the energy sqrt(even^2 + odd^2), the rectified even and odd responses [even]+, [-even]+, [odd]+,
            [-odd]+ and the normalised energy E / (c_lambda + mean over orientations of E) (c_lambda: the mean
            of that pool over the first 128 training images and all neurons); plus the 3 DoGs: 6 x 32 + 3 = 195
  readout   per neuron, linear ridge regression on the features standardised on the training tier (closed form,
            one eigendecomposition per neuron); the penalty is chosen per neuron on the validation tier (highest
            correlation) from a log grid
  score     the per-neuron correlation on the test tier between the prediction and the repeat average, averaged
            over neurons, divided by the mean of gt/ceiling_correlation: the `ceiling_fraction` of
            `v1sysid evaluate` (src/train/pipeline.cpp) for a model that is this bank.
Prints one line (or, with --json, one JSON object). --out also writes the JSON object, with the data file's
size and modification time, to a file (written under a temporary name, then renamed); analysis/report.py
reads DATA.shallow_bound.json next to a dataset instead of computing the bound again. Exit status: 0; 3 a
file cannot be read or written (7 a full disk); 4 a field is missing or malformed (the message names the file
and the field).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

N_ORIENTATIONS = 8
N_WAVELENGTHS = 4
DEFAULT_WAVELENGTHS = (6.0, 25.0)  # the simulator's receptive_fields.wavelength_px default
ENVELOPE_PER_WAVELENGTH = 0.4
DOG_CENTRE_SD = (1.25, 2.5, 5.0)
DOG_SURROUND_RATIO = 2.0
GABOR_FEATURES = ("energy", "even+", "even-", "odd+", "odd-", "normalised_energy")
POOL_IMAGES = 128  # training images (the first by image id) whose mean pooled energy is c_lambda
PENALTY_GRID = 10.0 ** np.arange(-5.0, 3.01, 0.5)  # times the number of training trials
MIN_STD = 1e-5  # kMinStd of src/metrics/metrics.hpp: a correlation with a constant is 0


class BoundError(Exception):
    """A dataset the bound cannot be computed on: the file, the field and what to do."""

    def __init__(self, path, field, why, fix, exit_code=4):
        self.exit_code = exit_code
        super().__init__(f"{path}: {field}: {why}; {fix}")


# ---- dataset ------------------------------------------------------------------------------------------------

def _text(values):
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()])


def read_dataset(path, with_images=True, extra=None):
    """The parts of a simulated StaticImageSet the bound needs, with each field checked. Also used by
    learnability.py: `with_images` False skips the images; `extra` maps further required fields to
    (dimensions, the fix when missing), returned under their names with rows checked against the trials."""
    try:
        import h5py
    except ImportError as e:
        raise BoundError(path, "h5py", "cannot import h5py", "run with Debian's /usr/bin/python3 "
                         "(apt-get install python3-h5py)", exit_code=3) from e
    if os.path.isdir(path):
        raise BoundError(path, "layout", "a FileTree folder", "pass the StaticImageSet file (simulate --out X.h5)",
                         exit_code=3)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BoundError(path, "file", f"cannot be opened as HDF5 ({e})", "pass a dataset written by "
                         "`v1sysid simulate`", exit_code=3) from e
    with f:
        def need(name, dims=None, fix=None):
            if name not in f or not isinstance(f[name], h5py.Dataset):
                fix = fix or ("the bound needs a digital V1's ground truth: simulate the data with `v1sysid simulate`"
                              if name.startswith("gt/") else "pass a dataset written by `v1sysid simulate`")
                raise BoundError(path, name, "missing", fix)
            value = f[name][()]
            if dims is not None and np.ndim(value) != dims:
                raise BoundError(path, name, f"has {np.ndim(value)} dimensions, expected {dims}",
                                 "pass a dataset written by `v1sysid simulate`")
            return value

        tiers = _text(need("tiers", 1))
        image_ids = np.asarray(need("item_info/frame_image_id", 1), dtype=np.int64)
        responses = np.asarray(need("responses", 2), dtype=np.float64)
        position = np.asarray(need("gt/position", 2), dtype=np.float64)
        ceiling = np.asarray(need("gt/ceiling_correlation", 1), dtype=np.float64)
        n_trials, n_neurons = responses.shape
        fields = {}
        for name, (dims, fix) in (extra or {}).items():
            fields[name] = need(name, dims, fix)
            if len(fields[name]) != n_trials:
                raise BoundError(path, name, f"{len(fields[name])} rows, expected {n_trials} (one per trial)",
                                 "the file is inconsistent: simulate it again")
        if "images" not in f:
            raise BoundError(path, "images", "missing", "pass a dataset written by `v1sysid simulate`")
        images_ds = f["images"]
        if images_ds.ndim not in (3, 4) or images_ds.shape[0] != n_trials:
            raise BoundError(path, "images", f"shape {images_ds.shape}, expected ({n_trials}, 1, H, W)",
                             "pass a dataset written by `v1sysid simulate`")
        for name, value, length in (("tiers", tiers, n_trials), ("item_info/frame_image_id", image_ids, n_trials),
                                    ("gt/ceiling_correlation", ceiling, n_neurons)):
            if len(value) != length:
                raise BoundError(path, name, f"{len(value)} rows, expected {length}",
                                 "the file is inconsistent: simulate it again")
        if position.shape != (n_neurons, 2):
            raise BoundError(path, "gt/position", f"shape {position.shape}, expected ({n_neurons}, 2)",
                             "the file is inconsistent: simulate it again")
        for tier in ("train", "validation", "test"):
            if not np.any(tiers == tier):
                raise BoundError(path, "tiers", f"no '{tier}' trials", "the bound needs train, validation and "
                                 "test tiers (the test tier with repeats)")
        for name, value in (("responses", responses), ("gt/position", position),
                            ("gt/ceiling_correlation", ceiling)):
            if not np.all(np.isfinite(value)):
                raise BoundError(path, name, "holds NaN or infinite values", "simulate the data again")
        if not ceiling.mean() > 0:
            raise BoundError(path, "gt/ceiling_correlation", f"mean {ceiling.mean():g}, not positive",
                             "the bound is a fraction of this mean: simulate the data again")
        # One image per distinct frame_image_id (repeats of an image share it).
        unique_ids, first_row = np.unique(image_ids, return_index=True)
        images = None
        if with_images:
            images = np.asarray(images_ds[np.sort(first_row)], dtype=np.float64)
            order = np.argsort(image_ids[np.sort(first_row)])
            images = images[order].reshape(len(unique_ids), *images_ds.shape[-2:])
        wavelengths = np.asarray(f["gt/wavelength_px"][()], dtype=np.float64) if "gt/wavelength_px" in f else None
        cell_type = _text(f["gt/cell_type"][()]) if "gt/cell_type" in f else None
        modulators = _text(f["gt/modulators"][()]) if "gt/modulators" in f else None
    finite = wavelengths[np.isfinite(wavelengths)] if wavelengths is not None else np.array([])
    wl_range = (float(finite.min()), float(finite.max())) if finite.size else DEFAULT_WAVELENGTHS
    image_row = np.searchsorted(unique_ids, image_ids)  # trial -> row of `images`
    return dict(path=path, tiers=tiers, image_row=image_row, images=images, responses=responses,
                position=position, ceiling=ceiling, wavelength_range=wl_range, cell_type=cell_type,
                modulators=modulators, **fields)


# ---- filter bank ----------------------------------------------------------------------------------------------

def bank_wavelengths(wl_range):
    lo, hi = wl_range
    if hi <= lo:
        return np.full(N_WAVELENGTHS, lo)
    return np.exp(np.linspace(np.log(lo), np.log(hi), N_WAVELENGTHS))


def _kernel_grid(radius):
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    return np.meshgrid(r, r)  # dx (columns), dy (rows)


def gabor_pair(wavelength, theta):
    """Even and odd Gabor of orientation theta (bars from +x towards +y, as neuron_model.hpp), on a square grid of
    radius 3 envelope SDs; DC removed within the envelope and scaled to unit L2 norm."""
    sigma = ENVELOPE_PER_WAVELENGTH * wavelength
    dx, dy = _kernel_grid(int(np.ceil(3 * sigma)))
    u = -dx * np.sin(theta) + dy * np.cos(theta)
    env = np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
    pair = []
    for phase in (0.0, np.pi / 2):
        g = env * np.cos(2 * np.pi * u / wavelength + phase)
        g -= env * g.sum() / env.sum()
        pair.append(g / np.linalg.norm(g))
    return pair


def dog(centre_sd):
    surround_sd = DOG_SURROUND_RATIO * centre_sd
    dx, dy = _kernel_grid(int(np.ceil(3 * surround_sd)))
    c = np.exp(-(dx ** 2 + dy ** 2) / (2 * centre_sd ** 2))
    s = np.exp(-(dx ** 2 + dy ** 2) / (2 * surround_sd ** 2))
    d = c / c.sum() - s / s.sum()
    return d / np.linalg.norm(d)


def fft_size(n):
    """Smallest 2^a 3^b >= n (fast for numpy's FFT)."""
    best = 1 << int(np.ceil(np.log2(max(n, 1))))
    p3 = 1
    while p3 < best:
        p2 = p3
        while p2 < n:
            p2 *= 2
        best = min(best, p2)
        p3 *= 3
    return best


class Bank:
    """The fixed filters as FFTs on zero-padded grids, one grid size per kernel radius (a small kernel needs less
    padding): a product of spectra is a correlation of the image with the kernel, pixels outside the image
    counting as mean grey (0 after z-scoring), as in the simulator."""

    def __init__(self, height, width, wl_range):
        self.height, self.width = height, width
        self.wavelengths = bank_wavelengths(wl_range)
        self.thetas = np.arange(N_ORIENTATIONS) * np.pi / N_ORIENTATIONS
        # pairs[li][oi] = (shape, FFT of the even kernel, FFT of the odd kernel)
        self.pairs = [[self._spectra(*gabor_pair(wl, th)) for th in self.thetas] for wl in self.wavelengths]
        self.dogs = [self._spectra(dog(s)) for s in DOG_CENTRE_SD]

    def _spectra(self, *kernels):
        r = kernels[0].shape[0] // 2
        shape = (fft_size(self.height + r), fft_size(self.width + r))
        offsets = np.arange(-r, r + 1)
        out = [shape]
        for k in kernels:
            # Correlation: out(p) = sum_d k(d) x(p + d), a convolution with k flipped: k(-d) at index d.
            grid = np.zeros(shape)
            grid[np.ix_(offsets % shape[0], offsets % shape[1])] = k[::-1, ::-1]
            out.append(np.fft.rfft2(grid))
        return tuple(out)

    def n_features(self):
        return len(GABOR_FEATURES) * N_ORIENTATIONS * N_WAVELENGTHS + len(DOG_CENTRE_SD)


class Sampler:
    """Bilinear read-out at fixed (x, y) positions (pixel centres at integers) of maps on a padded grid whose
    top-left H x W block is the image."""

    def __init__(self, position, height, width):
        x = np.clip(position[:, 0], 0, width - 1)
        y = np.clip(position[:, 1], 0, height - 1)
        self.x0 = np.minimum(np.floor(x).astype(int), max(width - 2, 0))
        self.y0 = np.minimum(np.floor(y).astype(int), max(height - 2, 0))
        fx, fy = x - self.x0, y - self.y0
        self.x1, self.y1 = np.minimum(self.x0 + 1, width - 1), np.minimum(self.y0 + 1, height - 1)
        self.weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])[:, None, :]
        self.n = len(x)

    def corners(self, maps):
        """(4, images, neurons): the maps at the 4 pixels around each position."""
        flat = maps.reshape(maps.shape[0], -1)
        stride = maps.shape[2]
        idx = np.concatenate([self.y0 * stride + self.x0, self.y0 * stride + self.x1,
                              self.y1 * stride + self.x0, self.y1 * stride + self.x1])
        return np.take(flat, idx, axis=1).reshape(maps.shape[0], 4, self.n).transpose(1, 0, 2)

    def interpolate(self, corners):
        return (corners * self.weight).sum(axis=0)


def features(images_z, bank, sampler, pool_constant=None):
    """(neurons, images, features) float32 of z-scored images, and c_lambda per wavelength (pool_constant, or if
    None the mean over these images and neurons of the orientation-pooled energy)."""
    spectra = {}

    def correlate(shape, kernel_fft):
        if shape not in spectra:
            spectra[shape] = np.fft.rfft2(images_z, s=shape)
        return np.fft.irfft2(spectra[shape] * kernel_fft, s=shape)

    n_img = images_z.shape[0]
    out = np.empty((sampler.n, n_img, bank.n_features()), dtype=np.float32)
    constants = []
    col = 0
    for li in range(N_WAVELENGTHS):
        per = {name: [] for name in GABOR_FEATURES}
        for shape, even_k, odd_k in bank.pairs[li]:
            even_c = sampler.corners(correlate(shape, even_k))
            odd_c = sampler.corners(correlate(shape, odd_k))
            # The energy map read out bilinearly: the energy at the 4 pixels, then interpolated.
            per["energy"].append(sampler.interpolate(np.sqrt(even_c ** 2 + odd_c ** 2)))
            even, odd = sampler.interpolate(even_c), sampler.interpolate(odd_c)
            per["even+"].append(np.maximum(even, 0))
            per["even-"].append(np.maximum(-even, 0))
            per["odd+"].append(np.maximum(odd, 0))
            per["odd-"].append(np.maximum(-odd, 0))
        pool = np.mean(per["energy"], axis=0)  # mean over orientations, (images, neurons)
        c = float(pool.mean()) if pool_constant is None else pool_constant[li]
        constants.append(c)
        per["normalised_energy"] = [e / (c + pool) for e in per["energy"]]
        for name in GABOR_FEATURES:
            for values in per[name]:
                out[:, :, col] = values.T
                col += 1
    for shape, k in bank.dogs:
        out[:, :, col] = sampler.interpolate(sampler.corners(correlate(shape, k))).T
        col += 1
    return out, constants


# ---- ridge readout ---------------------------------------------------------------------------------------------

def pearson_columns(a, b):
    """Per-column Pearson r of (rows, columns) arrays; 0 where either column is constant (metrics.cpp)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    sxx, syy = (a * a).sum(axis=0), (b * b).sum(axis=0)
    n = a.shape[0]
    ok = (sxx / n > MIN_STD ** 2) & (syy / n > MIN_STD ** 2)
    return np.where(ok, (a * b).sum(axis=0) / np.sqrt(np.where(ok, sxx * syy, 1.0)), 0.0)


def shallow_bound(data, chunk=128, log=None):
    t0 = time.time()
    tiers, rows, responses = data["tiers"], data["image_row"], data["responses"]
    n_neurons = responses.shape[1]
    images = data["images"]
    train_trials = np.flatnonzero(tiers == "train")
    train_pixels = images[np.unique(rows[train_trials])]
    mean, sd = float(train_pixels.mean()), float(train_pixels.std())
    if not sd > 0:
        raise BoundError(data["path"], "images", "the training images are constant", "simulate the data again")
    h, w = images.shape[1:]
    bank = Bank(h, w, data["wavelength_range"])
    sampler = Sampler(data["position"], h, w)
    p = bank.n_features()

    def tier_images(tier):
        trials = np.flatnonzero(tiers == tier)
        img, inverse, counts = np.unique(rows[trials], return_inverse=True, return_counts=True)
        return trials, img, inverse, counts

    # Training tier: the Gram matrix and X'y per neuron, accumulated over chunks of distinct images (features of
    # all training images at once would take n_images x n_neurons x 195 floats), shifted by the first chunk's mean
    # so that float32 sums do not cancel.
    trials, img, inverse, counts = tier_images("train")
    y_sum = np.zeros((len(img), n_neurons))
    np.add.at(y_sum, inverse, responses[trials])
    T = float(len(trials))
    gram = np.zeros((n_neurons, p, p))
    xty = np.zeros((n_neurons, p))
    xsum = np.zeros((n_neurons, p))
    # c_lambda: the mean pool of the first training images, fixed for every image (and whatever the chunk).
    _, constants = features((images[img[:POOL_IMAGES]] - mean) / sd, bank, sampler)
    shift = None
    for start in range(0, len(img), chunk):
        sl = slice(start, start + chunk)
        F, _ = features((images[img[sl]] - mean) / sd, bank, sampler, constants)
        if shift is None:
            shift = F.mean(axis=1)
        D = F
        D -= shift[:, None, :]  # (neurons, images, features)
        Dw = D * np.sqrt(counts[sl]).astype(np.float32)[None, :, None]
        gram += np.matmul(np.transpose(Dw, (0, 2, 1)), Dw)  # a transposed view goes to BLAS as is
        xty += np.einsum("nip,in->np", D, y_sum[sl], optimize=True)
        xsum += np.einsum("nip,i->np", D, counts[sl].astype(np.float32), optimize=True)
    m = xsum / T  # mean of the shifted features
    y_mean = y_sum.sum(axis=0) / T
    # In place (n_neurons x 195 x 195 float64 is 300 MB for the demo): the Gram matrix becomes the covariance
    # and then the correlation matrix of the standardised features.
    Z = gram
    Z -= T * m[:, :, None] * m[:, None, :]
    f_sd = np.sqrt(np.maximum(np.einsum("npp->np", Z) / T, 0))
    keep = f_sd > 1e-6 * (f_sd.max(axis=1, keepdims=True) + 1e-30)
    scale = np.where(keep, 1.0 / np.where(keep, f_sd, 1.0), 0.0)  # a constant feature is dropped
    Z *= scale[:, :, None]
    Z *= scale[:, None, :]
    b = (xty - m * (y_mean * T)[:, None]) * scale
    s, V = np.linalg.eigh(Z)
    del gram, Z
    s = np.maximum(s, 0)
    a = np.einsum("npq,np->nq", V, b)  # V' b
    if log:
        log(f"train features and eigendecompositions: {time.time() - t0:.1f} s")

    def project(tier):
        """(neurons, images, features): the standardised features of a tier's distinct images in each neuron's
        eigenbasis; the tier's trials and each trial's image."""
        trials, img, inverse, _ = tier_images(tier)
        F, _ = features((images[img] - mean) / sd, bank, sampler, constants)
        F -= (shift + m)[:, None, :]
        F *= scale[:, None, :]
        return np.matmul(F, V), trials, inverse  # (neurons, images, features)

    def predict(P, penalty):  # penalty: scalar or (neurons,)
        coef = a / (s + np.reshape(penalty, (-1, 1)))
        return np.einsum("nip,np->in", P, coef) + y_mean  # (images, neurons)

    P, trials, inverse = project("validation")
    grid = PENALTY_GRID * T
    val_r = np.stack([pearson_columns(predict(P, lam)[inverse], responses[trials]) for lam in grid])
    # Highest validation correlation; on ties (e.g. a silent neuron) the strongest penalty.
    best = len(grid) - 1 - np.argmax(val_r[::-1], axis=0)
    P, trials, inverse = project("test")
    prediction = predict(P, grid[best])  # per distinct test image
    r = repeat_average_correlations(prediction, responses[trials], inverse)
    ceiling = data["ceiling"]
    mean_ceiling = float(ceiling.mean())
    result = dict(file=data["path"], shallow_bound_correlation=float(r.mean()), ceiling=mean_ceiling,
                  fraction_of_ceiling=float(r.mean() / mean_ceiling),
                  n_features=p, n_neurons=int(n_neurons), n_train_trials=int(T),
                  n_test_images=int(prediction.shape[0]), wavelengths_px=[round(float(x), 3) for x in bank.wavelengths],
                  penalty_median=float(np.median(PENALTY_GRID[best])), seconds=round(time.time() - t0, 1))
    result["by"] = fractions_by_group(data, r)
    result["per_neuron_correlation"] = r
    return result


def repeat_average_correlations(prediction, test_responses, inverse):
    """Per-neuron correlation on the test tier between a prediction per distinct test image (images, neurons)
    and the repeat average of the test trials' responses; inverse: each trial's row of `prediction`."""
    averaged = np.zeros(prediction.shape)
    np.add.at(averaged, inverse, test_responses)
    averaged /= np.bincount(inverse, minlength=prediction.shape[0])[:, None]
    return pearson_columns(prediction, averaged)


def fractions_by_group(data, r):
    """Mean correlation, ceiling and their ratio per cell type, modulator combination and single modulator."""
    ceiling = data["ceiling"]
    groups = {}
    for key in ("cell_type", "modulators"):
        labels = data[key]
        if labels is None:
            continue
        groups[key] = {}
        for name in np.unique(labels):
            sel = labels == name
            groups[key][str(name)] = dict(n=int(sel.sum()), correlation=float(r[sel].mean()),
                                          ceiling=float(ceiling[sel].mean()),
                                          fraction_of_ceiling=float(r[sel].mean() / ceiling[sel].mean()))
    if data["modulators"] is not None:  # each modulator on its own, whatever it is combined with
        single = sorted({part for combo in data["modulators"] for part in combo.split("+")})
        groups["modulator"] = {}
        for name in single:
            sel = np.array([name in combo.split("+") for combo in data["modulators"]])
            groups["modulator"][name] = dict(n=int(sel.sum()), correlation=float(r[sel].mean()),
                                             ceiling=float(ceiling[sel].mean()),
                                             fraction_of_ceiling=float(r[sel].mean() / ceiling[sel].mean()))
    return groups


def print_by_group(by):
    """Prints the per-group table of fractions_by_group (cell type, modulators), one line a group."""
    for key, table in by.items():
        for name, g in table.items():
            print(f"  {key} {name}: n {g['n']}, correlation {g['correlation']:.3f}, ceiling "
                  f"{g['ceiling']:.3f}, fraction {g['fraction_of_ceiling']:.3f}")


def summary_line(res):
    return (f"shallow bound of {res['file']}: test correlation {res['shallow_bound_correlation']:.3f}, "
            f"mean ceiling {res['ceiling']:.3f}, fraction of the ceiling {res['fraction_of_ceiling']:.3f} "
            f"({res['n_features']} fixed features at the true RF centres, ridge readout, {res['n_neurons']} "
            f"neurons, {res['seconds']:.0f} s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", help="a digital-V1 dataset (StaticImageSet .h5 written by `v1sysid simulate`)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the line")
    p.add_argument("--by-type", action="store_true", help="also print the bound per cell type and modulator")
    p.add_argument("--chunk", type=int, default=128, help="training images per feature chunk (memory)")
    p.add_argument("--out", help="also write the JSON object to this file (report.py reads DATA.shallow_bound.json)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        if not os.path.exists(args.data):
            raise BoundError(args.data, "file", "no such file", "pass a dataset written by `v1sysid simulate`",
                             exit_code=3)
        log = (lambda msg: print(f"shallow_bound: {msg}", file=sys.stderr)) if args.verbose else None
        res = shallow_bound(read_dataset(args.data), chunk=max(1, args.chunk), log=log)
    except BoundError as e:
        print(f"shallow_bound.py: error: {e}", file=sys.stderr)
        return e.exit_code
    res.pop("per_neuron_correlation")
    if args.out:
        import report  # its atomic writer and error wording; imported here because it loads matplotlib
        stat = os.stat(args.data)
        res.update(data_size=stat.st_size, data_mtime_ns=stat.st_mtime_ns)
        try:
            report.write_atomically(args.out, lambda f: f.write(json.dumps(res, indent=1) + "\n"))
        except report.OutputError as e:
            print(f"shallow_bound.py: error: {e}", file=sys.stderr)
            return e.exit_code
    if args.json:
        print(json.dumps(res))
        return 0
    print(summary_line(res))
    if args.by_type:
        print_by_group(res["by"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
