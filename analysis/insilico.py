#!/usr/bin/env python3
"""In-silico tuning experiments on a fitted model, scored against the digital V1's ground truth (issue 22).

  analysis/insilico.py tuning --checkpoint CKPT --data DATASET --stimuli STIMULI --out DIR [--exe v1sysid]
                              [--neurons N] [--force]
  analysis/insilico.py mei    --checkpoint CKPT --data DATASET --stimuli STIMULI --out DIR [--exe v1sysid]
                              [--neurons N] [--starts S] [--steps K] [--rms R] [--force]
  analysis/insilico.py ensemble --ensemble ENS --checkpoint CKPT --data DATASET --out DIR [--exe v1sysid] [--force]

ensemble: the ensemble of `v1sysid ensemble` against one model (the best trial, its first member) on the test
tier (`v1sysid evaluate --json`): test correlation, fraction of the ceiling and FEVE of each and the gain
(ensemble - single). DIR/ensemble.json.

mei: the model's most exciting inputs (`v1sysid mei`), scored by what the true neurons do with them: per neuron
the true rate of its MEI over its true maximum among the training images of the dataset (> 1: the MEI drives the
real neuron harder than any training image; the model's own ratio, its activation at the MEI over its maximum
prediction on the training images, beside it). DIR/mei.h5 (the MEIs), DIR/mei_scores.h5 and DIR/mei.json.

The same grating experiments run twice, on the model (`v1sysid predict`) and on the simulated neurons
themselves (`v1sysid simulate --rates-for`, the dataset's own config and seed, so the same calibrated neurons),
and each neuron's tuning measured in the model is compared with the one measured in the truth:

  orientation / spatial frequency  full-field sinusoidal gratings, ORIENTATIONS x WAVELENGTHS x PHASES, the
                                   response of an (orientation, wavelength) the mean over the phases. Preferred
                                   wavelength: the argmax of the best orientation's response; preferred
                                   orientation: the doubled-angle vector average of the baseline-subtracted
                                   responses at that wavelength (bars' angle, gt/orientation's convention:
                                   radians in [0, pi) from +x towards +y); OSI: that vector's length over the sum.
  size                             gratings in discs of radius SIZES_PX centred on the neuron's receptive field
                                   (model: the centre of mass of |RF| from `v1sysid rf`; truth: gt/position), at
                                   its preferred orientation and wavelength, the maximum over the phases.
                                   Preferred size: the radius of the largest response; suppression index SI =
                                   (peak - response at the largest disc) / peak, baseline subtracted (0 when the
                                   peak is not above the blank).
  contrast                         full-field gratings at the preferred orientation and wavelength, CONTRASTS
                                   (mean over phases); c50: the contrast at half the range, by interpolation.

Images are grey levels around the training images' mean grey level; contrast c scales a sinusoid of amplitude
c * min(mean, 255 - mean). The blank (uniform mean grey) is the baseline.

Outputs: DIR/tuning.h5 (per-neuron curves and measures, model/ and truth/), DIR/insilico.json (the scores and
the commands), and the table printed. Scores: the preferred-orientation error (degrees, axial) of the model
against the truth's measured preference and against gt/orientation, over the oriented neurons (truth OSI >=
0.2); Pearson r of SI, preferred size and c50 between model and truth; mean SI of the neurons with and
without a true surround modulator (gt/modulators), in model and truth.

Exit status: 0 done; 2 bad arguments; 3 a file is missing or unreadable; 4 a v1sysid command failed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import v1analysis as va  # noqa: E402

ORIENTATIONS = 12                        # 15 degree steps over [0, pi)
PHASES = 4
CONTRASTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
ORIENTED_OSI = 0.2


class InsilicoError(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


# ---- stimuli ---------------------------------------------------------------------------------------------

def wavelengths_for(height, width):
    """Wavelengths (px) from 3 px to the image's shorter side, log-spaced: 5 values."""
    return tuple(float(w) for w in np.geomspace(3.0, min(height, width), 5))


def sizes_for(height, width):
    """Disc radii (px) from 1 px to half the image's diagonal, log-spaced: 8 values."""
    return tuple(float(r) for r in np.geomspace(1.0, 0.5 * np.hypot(height, width), 8))


def grating(height, width, orientation, wavelength, phase, amplitude, mean, centre=None, radius=None):
    """A sinusoidal grating whose bars run at `orientation` (radians from +x towards +y, as the simulator's
    Gabors), grey levels; inside a disc of `radius` around `centre` (x, y) with a 1 px cosine edge when given."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    across = -x * np.sin(orientation) + y * np.cos(orientation)
    image = amplitude * np.cos(2 * np.pi * across / wavelength + phase)
    if radius is not None:
        d = np.hypot(x - centre[0], y - centre[1])
        image *= np.clip(0.5 + (radius - d), 0.0, 1.0)
    return (mean + image).astype(np.float32)


# ---- the two responders ------------------------------------------------------------------------------------

def run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise InsilicoError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stdout[-800:]}{r.stderr[-800:]}", 4)
    return r


class Model:
    """A checkpoint answering images through `v1sysid predict` (grey levels in, predicted responses out)."""

    def __init__(self, exe, checkpoint, work):
        self.exe, self.checkpoint, self.work = exe, checkpoint, work
        with h5py.File(checkpoint, "r") as f:
            self.height, self.width = int(f.attrs["height"]), int(f.attrs["width"])
            self.n = int(f.attrs["n_neurons"])
            self.image_mean = float(f["export/preprocessing/image_mean"][()])

    def responses(self, images, name):
        """images [T, H, W] -> predictions [T, n]: a dataset whose test tier is the images."""
        path, pred = os.path.join(self.work, name + ".h5"), os.path.join(self.work, name + "_pred.h5")
        T = len(images)
        filler = np.full((2, 1, self.height, self.width), self.image_mean, dtype=np.float32)
        with h5py.File(path, "w") as f:
            f["images"] = np.concatenate([filler, filler, images[:, None]])
            f["responses"] = np.ones((4 + T, self.n), dtype=np.float32)
            f["tiers"] = np.array(["train"] * 2 + ["validation"] * 2 + ["test"] * T, dtype="S")
            f["item_info/frame_image_id"] = np.arange(4 + T, dtype=np.int64)
            f["neurons/unit_ids"] = np.arange(self.n, dtype=np.int64)
        run([self.exe, "predict", "--checkpoint", self.checkpoint, "--data", path, "--tier", "test", "--out", pred,
             "--force"], "v1sysid predict")
        with h5py.File(pred, "r") as f:
            return f["predictions"][...].astype(np.float64)

    def centres(self):
        """Per neuron the centre of mass (x, y) of |RF| (`v1sysid rf`, the input gradient at the mean image)."""
        out = os.path.join(self.work, "rf.h5")
        run([self.exe, "rf", "--checkpoint", self.checkpoint, "--out", out, "--force"], "v1sysid rf")
        with h5py.File(out, "r") as f:
            rf = np.abs(f["rf"][...].astype(np.float64))
        y, x = np.mgrid[0:rf.shape[1], 0:rf.shape[2]]
        mass = rf.sum(axis=(1, 2))
        mass[mass == 0] = 1.0
        return np.stack([(rf * x).sum(axis=(1, 2)) / mass, (rf * y).sum(axis=(1, 2)) / mass], axis=1)


class Truth:
    """The simulated neurons answering images through `v1sysid simulate --rates-for` (noise-free rates)."""

    def __init__(self, exe, data, stimuli, work):
        self.exe, self.stimuli, self.work = exe, stimuli, work
        with h5py.File(data, "r") as f:
            if "gt" not in f or "config" not in f.attrs:
                raise InsilicoError(f"{data}: no gt/ group or 'config' attribute; pass a dataset written by "
                                    "'v1sysid simulate'", 3)
            self.config = os.path.join(work, "simulation.yaml")
            with open(self.config, "w") as c:
                c.write(va.text(f.attrs["config"]))
            self.animal = int(f["neurons/animal_ids"][0]) if "neurons/animal_ids" in f else 1
            self.position = f["gt/position"][...].astype(np.float64)
            self.orientation = f["gt/orientation"][...].astype(np.float64)
            self.modulators = (np.array([va.text(v) for v in f["gt/modulators"][...]]) if "gt/modulators" in f
                               else None)

    def responses(self, images, name):
        path, out = os.path.join(self.work, name + "_images.h5"), os.path.join(self.work, name + "_rates.h5")
        with h5py.File(path, "w") as f:
            f["images"] = images
        run([self.exe, "simulate", self.config, "--stimuli", self.stimuli, "--rates-for", path, "--animal",
             str(self.animal), "--out", out, "--force"], "v1sysid simulate --rates-for")
        with h5py.File(out, "r") as f:
            return f["rates"][...].astype(np.float64)

    def centres(self):
        return self.position


# ---- the experiments --------------------------------------------------------------------------------------

def preferred_orientation(curve, orientations):
    """curve [n, O] (baseline subtracted, clipped at 0) -> (preferred orientation in [0, pi), OSI)."""
    r = np.clip(curve, 0, None)
    vector = (r * np.exp(2j * orientations)).sum(axis=1)
    total = r.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.where(total > 0, np.abs(vector) / total, 0.0)
    return (0.5 * np.angle(vector)) % np.pi, osi


def half_point(x, y):
    """The x where y first reaches half its range (linear interpolation); NaN for a flat y."""
    lo, hi = y[0], y.max()
    if not hi > lo:
        return np.nan
    target = lo + 0.5 * (hi - lo)
    k = int(np.argmax(y >= target))
    if k == 0:
        return float(x[0])
    return float(x[k - 1] + (target - y[k - 1]) * (x[k] - x[k - 1]) / (y[k] - y[k - 1]))


def tuning(responder, height, width, mean, neurons):
    """Every experiment on one responder; returns a dict of per-neuron arrays."""
    amplitude = min(mean, 255.0 - mean)
    thetas = np.arange(ORIENTATIONS) * np.pi / ORIENTATIONS
    phases = np.arange(PHASES) * 2 * np.pi / PHASES
    wavelengths, sizes = wavelengths_for(height, width), sizes_for(height, width)
    # Blank + orientation x wavelength x phase, full field, full contrast.
    images = [np.full((height, width), mean, dtype=np.float32)]
    for t in thetas:
        for w in wavelengths:
            for p in phases:
                images.append(grating(height, width, t, w, p, amplitude, mean))
    r = responder.responses(np.stack(images), "orientation")[:, neurons]
    blank = r[0]
    grid = r[1:].reshape(ORIENTATIONS, len(wavelengths), PHASES, -1).mean(axis=2) - blank  # [O, W, n]
    best_w = np.argmax(grid.max(axis=0), axis=0)                                            # [n]
    at_w = grid[:, best_w, np.arange(len(neurons))].T                                       # [n, O]
    pref, osi = preferred_orientation(at_w, thetas)
    # Contrast series for every (orientation bin, wavelength) a neuron prefers.
    pref_bin = np.round(pref / (np.pi / ORIENTATIONS)).astype(int) % ORIENTATIONS
    keys = sorted(set(zip(pref_bin.tolist(), best_w.tolist())))
    images = [grating(height, width, thetas[o], wavelengths[w], p, c * amplitude, mean)
              for o, w in keys for c in CONTRASTS for p in phases]
    r = responder.responses(np.stack(images), "contrast")[:, neurons]
    r = r.reshape(len(keys), len(CONTRASTS), PHASES, -1).mean(axis=2) - blank               # [K, C, n]
    index = {k: i for i, k in enumerate(keys)}
    contrast = np.stack([r[index[(o, w)], :, j] for j, (o, w) in enumerate(zip(pref_bin, best_w))])  # [n, C]
    c50 = np.array([half_point(np.array((0.0,) + CONTRASTS), np.concatenate([[0.0], c])) for c in contrast])
    # Size series per neuron, centred on its receptive field.
    centres = responder.centres()[neurons]
    images = [grating(height, width, pref[j], wavelengths[best_w[j]], p, amplitude, mean, centres[j], s)
              for j in range(len(neurons)) for s in sizes for p in phases]
    r = responder.responses(np.stack(images), "size")
    r = r[:, neurons].reshape(len(neurons), len(sizes), PHASES, len(neurons))
    size_curve = np.stack([r[j, :, :, j].max(axis=1) for j in range(len(neurons))]) - blank[:, None]  # [n, S]
    peak = size_curve.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        si = np.where(peak > 0, (peak - size_curve[:, -1]) / peak, 0.0)
    return {"blank": blank, "orientation_wavelength": np.moveaxis(grid, 2, 0), "preferred_wavelength_px":
            np.array(wavelengths)[best_w], "preferred_orientation": pref, "osi": osi, "contrast": contrast,
            "c50": c50, "size": size_curve, "preferred_size_px": np.array(sizes)[np.argmax(size_curve, axis=1)],
            "suppression_index": np.clip(si, 0, 1), "centre": centres}


def pearson(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def scores(model, truth, gt_orientation, modulators):
    oriented = truth["osi"] >= ORIENTED_OSI
    err_truth = va.axial_error_deg(model["preferred_orientation"][oriented], truth["preferred_orientation"][oriented])
    has_gt = oriented & np.isfinite(gt_orientation)
    err_gt = va.axial_error_deg(model["preferred_orientation"][has_gt], gt_orientation[has_gt])
    truth_vs_gt = va.axial_error_deg(truth["preferred_orientation"][has_gt], gt_orientation[has_gt])
    out = {
        "neurons": int(len(model["osi"])), "oriented_neurons": int(oriented.sum()),
        "orientation_error_deg_vs_truth_median": float(np.median(err_truth)) if err_truth.size else None,
        "orientation_error_deg_vs_gt_median": float(np.median(err_gt)) if err_gt.size else None,
        "truth_tuning_vs_gt_orientation_deg_median": float(np.median(truth_vs_gt)) if truth_vs_gt.size else None,
        "suppression_index_r": pearson(model["suppression_index"], truth["suppression_index"]),
        "preferred_size_r": pearson(np.log(model["preferred_size_px"]), np.log(truth["preferred_size_px"])),
        "c50_r": pearson(model["c50"], truth["c50"]),
        "osi_r": pearson(model["osi"], truth["osi"]),
    }
    if modulators is not None:
        surround = np.array(["surround" in m for m in modulators])
        for name, sel in (("with_surround_modulator", surround), ("without_surround_modulator", ~surround)):
            out[f"mean_si_{name}"] = {"neurons": int(sel.sum()),
                                      "model": float(model["suppression_index"][sel].mean()) if sel.any() else None,
                                      "truth": float(truth["suppression_index"][sel].mean()) if sel.any() else None}
    return out


def responders(args, exe, work):
    """The model and the truth of one command line, checked to be of the same neurons, and the neurons asked for."""
    model = Model(exe, args.checkpoint, work)
    truth = Truth(exe, args.data, args.stimuli, work)
    if len(truth.position) != model.n:
        raise InsilicoError(f"the checkpoint has {model.n} neurons, {args.data} {len(truth.position)}: "
                            "pass the dataset the model was fitted on", 2)
    return model, truth, np.arange(model.n if args.neurons is None else min(args.neurons, model.n))


def mei(args, exe):
    """The `mei` subcommand: returns the summary dict."""
    with tempfile.TemporaryDirectory(dir=args.out) as work:
        model, truth, neurons = responders(args, exe, work)
        mei_path = os.path.join(args.out, "mei.h5")
        run([exe, "mei", "--checkpoint", args.checkpoint, "--out", mei_path, "--force", "--starts", str(args.starts),
             "--steps", str(args.steps), "--rms", str(args.rms), "--neurons", *[str(n) for n in neurons]],
            "v1sysid mei")
        with h5py.File(mei_path, "r") as f:
            images, activation = f["images"][...][:, 0], f["activation"][...]
        with h5py.File(args.data, "r") as f:
            tiers = np.array([va.text(v) for v in f["tiers"][...]])
            train_images = f["images"][...][tiers == "train"][:, 0]
        true_at_mei = truth.responses(images, "mei")[np.arange(len(neurons)), neurons]
        true_train = truth.responses(train_images, "train")[:, neurons].max(axis=0)
        model_train = model.responses(train_images, "train")[:, neurons].max(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        true_ratio = true_at_mei / true_train
        model_ratio = activation / model_train
    tmp = os.path.join(args.out, "mei_scores.h5.partial")
    with h5py.File(tmp, "w") as f:
        for name, values in (("neurons", neurons), ("true_rate_at_mei", true_at_mei),
                             ("true_max_over_training_images", true_train), ("true_ratio", true_ratio),
                             ("model_activation_at_mei", activation), ("model_max_over_training_images", model_train),
                             ("model_ratio", model_ratio)):
            f[name] = values
    os.replace(tmp, os.path.join(args.out, "mei_scores.h5"))
    ok = np.isfinite(true_ratio)
    return {"neurons": int(len(neurons)), "training_images": int(len(train_images)),
            "true_ratio_median": float(np.median(true_ratio[ok])) if ok.any() else None,
            "true_ratio_above_1_fraction": float((true_ratio[ok] > 1).mean()) if ok.any() else None,
            "model_ratio_median": float(np.nanmedian(model_ratio)),
            "true_vs_model_ratio_r": pearson(true_ratio, model_ratio),
            "checkpoint": args.checkpoint, "data": args.data, "stimuli": args.stimuli,
            "starts": args.starts, "steps": args.steps, "rms": args.rms}


ENSEMBLE_MEASURES = ("test_correlation", "ceiling_fraction", "feve", "fraction_oracle")


def ensemble_gain(args, exe):
    """The `ensemble` subcommand: returns the summary dict."""
    measured = {}
    for who, path in (("single", args.checkpoint), ("ensemble", args.ensemble)):
        r = run([exe, "evaluate", "--checkpoint", path, "--data", args.data, "--tier", "test", "--json"],
                "v1sysid evaluate")
        try:
            measured[who] = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            raise InsilicoError(f"v1sysid evaluate --checkpoint {path}: no JSON on its output ({e})", 4)
    with h5py.File(args.ensemble, "r") as f:
        members = int(len(f["members"])) if "members" in f else None
    out = {"ensemble": args.ensemble, "checkpoint": args.checkpoint, "data": args.data, "members": members}
    for name in ENSEMBLE_MEASURES:
        single, ens = measured["single"].get(name), measured["ensemble"].get(name)
        out[f"single_{name}"], out[f"ensemble_{name}"] = single, ens
        out[f"gain_{name}"] = ens - single if single is not None and ens is not None else None
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tuning", help="orientation, spatial frequency, size and contrast tuning, model vs truth")
    t.add_argument("--checkpoint", required=True, help="checkpoint.h5 of `v1sysid train` (or a sweep trial)")
    t.add_argument("--data", required=True, help="the digital-V1 dataset the model was fitted on (its gt/ and config)")
    t.add_argument("--stimuli", required=True, help="the stimulus file that dataset was simulated from")
    t.add_argument("--out", required=True, help="output folder (tuning.h5, insilico.json)")
    t.add_argument("--exe", default=None, help="v1sysid executable (default: V1SYSID_EXE or build/*/v1sysid)")
    t.add_argument("--neurons", type=int, default=None, help="only the first N neurons (a quick look)")
    t.add_argument("--force", action="store_true", help="replace an existing DIR/insilico.json")
    m = sub.add_parser("mei", help="most exciting inputs of the model, scored by the true neurons' rates")
    for a in ("--checkpoint", "--data", "--stimuli", "--out"):
        m.add_argument(a, required=True, help="as for tuning")
    m.add_argument("--exe", default=None)
    m.add_argument("--neurons", type=int, default=None, help="only the first N neurons")
    m.add_argument("--starts", type=int, default=3)
    m.add_argument("--steps", type=int, default=200)
    m.add_argument("--rms", type=float, default=1.0, help="RMS contrast in training pixel SDs (v1sysid mei --rms)")
    m.add_argument("--force", action="store_true", help="replace an existing DIR/mei.json")
    e = sub.add_parser("ensemble", help="an ensemble against a single model on the test tier (the ensemble's gain)")
    e.add_argument("--ensemble", required=True, help="the file of `v1sysid ensemble`")
    e.add_argument("--checkpoint", required=True, help="the single model (e.g. the best trial, the first member)")
    e.add_argument("--data", required=True, help="the dataset both were fitted on")
    e.add_argument("--out", required=True, help="output folder (ensemble.json)")
    e.add_argument("--exe", default=None)
    e.add_argument("--force", action="store_true", help="replace an existing DIR/ensemble.json")
    args = parser.parse_args(argv)
    try:
        inputs = [(args.checkpoint, "--checkpoint"), (args.data, "--data")]
        inputs += [(args.ensemble, "--ensemble")] if args.command == "ensemble" else [(args.stimuli, "--stimuli")]
        for path, what in inputs:
            if not os.path.isfile(path):
                raise InsilicoError(f"{what} {path}: no such file", 3)
        exe = args.exe or os.environ.get("V1SYSID_EXE") or next(
            (p for p in (os.path.join(HERE, "..", "build", b, "v1sysid") for b in ("cpu-release", "ci", "cpu-debug"))
             if os.path.exists(p)), None)
        if not exe:
            raise InsilicoError("no v1sysid executable: pass --exe or set V1SYSID_EXE", 2)
        summary_path = os.path.join(args.out, {"tuning": "insilico.json", "mei": "mei.json",
                                               "ensemble": "ensemble.json"}[args.command])
        if os.path.exists(summary_path) and not args.force:
            raise InsilicoError(f"{summary_path} exists; pass --force to replace it or choose another --out", 2)
        os.makedirs(args.out, exist_ok=True)
        if args.command in ("mei", "ensemble"):
            summary = mei(args, exe) if args.command == "mei" else ensemble_gain(args, exe)
            write_json(summary_path, summary)
            extra = ["mei.h5", "mei_scores.h5"] if args.command == "mei" else []
            print_summary(summary, [summary_path, *(os.path.join(args.out, name) for name in extra)])
            return 0
        with tempfile.TemporaryDirectory(dir=args.out) as work:
            model, truth, neurons = responders(args, exe, work)
            with h5py.File(args.data, "r") as f:
                tiers = np.array([va.text(v) for v in f["tiers"][...]])
                mean = float(f["images"][...][tiers == "train"].mean())
            results = {"model": tuning(model, model.height, model.width, mean, neurons),
                       "truth": tuning(truth, model.height, model.width, mean, neurons)}
        summary = scores(results["model"], results["truth"], truth.orientation[neurons],
                         None if truth.modulators is None else truth.modulators[neurons])
        summary.update({"checkpoint": args.checkpoint, "data": args.data, "stimuli": args.stimuli,
                        "orientations": ORIENTATIONS, "phases": PHASES, "contrasts": list(CONTRASTS),
                        "wavelengths_px": list(wavelengths_for(model.height, model.width)),
                        "sizes_px": list(sizes_for(model.height, model.width)), "oriented_osi": ORIENTED_OSI})
        tmp = os.path.join(args.out, "tuning.h5.partial")
        with h5py.File(tmp, "w") as f:
            for who, measures in results.items():
                for name, values in measures.items():
                    f[f"{who}/{name}"] = np.asarray(values)
            f["neurons"] = neurons
        os.replace(tmp, os.path.join(args.out, "tuning.h5"))
        write_json(summary_path, summary)
    except InsilicoError as e:
        print(f"insilico.py: error: {e}", file=sys.stderr)
        return e.code
    except OSError as e:
        print(f"insilico.py: error: {e}", file=sys.stderr)
        return 3
    print_summary(summary, [os.path.join(args.out, "tuning.h5"), summary_path])
    return 0


def write_json(path, summary):
    with open(path + ".partial", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(path + ".partial", path)


def print_summary(summary, written):
    for key, value in summary.items():
        if not isinstance(value, (list, str)):
            print(f"{key:>44}: {value}")
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    sys.exit(main())
