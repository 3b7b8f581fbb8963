#!/usr/bin/python3
"""Learnability check of a digital V1: the fraction of the ceiling reached by the simulator's own computation with
a readout fitted per neuron (issue 17, item 6).

    v1sysid simulate CONFIG.yaml --out DATA.h5 --store-raw-drive
    /usr/bin/python3 analysis/learnability.py DATA.h5 [--json] [--by-type]

The simulator's rate is rate = gain * softplus(selectivity * z(g) - threshold) + baseline of each neuron's raw
drive g (src/sim/neuron_model.hpp), g being the deep computation; `simulate --store-raw-drive` stores g of every
neuron on every trial's image as gt/raw_drive (docs/formats.md). This check gives every neuron its own g and
nothing else of the ground truth:
  basis     per neuron, g standardised on the training tier, and the hinges max(0, g - q_k) at its training
            quantiles q_k, k = 1/10 ... 9/10: a piecewise-linear function of g with N_KNOTS + 1 pieces
  readout   ridge regression of the NOISY single-trial training responses on the basis (intercept unpenalised);
            the penalty per neuron from a log grid, the highest correlation on the validation tier
  score     as analysis/shallow_bound.py: per-neuron correlation on the test tier between the prediction and the
            repeat average, averaged over neurons, divided by the mean of gt/ceiling_correlation.
A fraction near 1 says that the responses are a learnable function of the deep computation, so the room between
the shallow bound and the ceiling measures what a learned core can gain, not noise or an unlearnable function.
Exit status: 0; 3 a file cannot be read; 4 a field is missing or malformed (the message names the file, the
field and the fix).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shallow_bound import BoundError, fractions_by_group, pearson_columns, print_by_group, read_dataset, \
    repeat_average_correlations  # noqa: E402

N_KNOTS = 9
PENALTY_GRID = 10.0 ** np.arange(-6.0, 2.01, 0.5)  # times the number of training trials
RAW_DRIVE = "gt/raw_drive"


def read(path):
    fix = ("the learnability check needs every neuron's raw drive: rerun `v1sysid simulate CONFIG --out " +
           os.path.basename(path) + " --store-raw-drive`")
    data = read_dataset(path, with_images=False, extra={RAW_DRIVE: (2, fix)})
    g = np.asarray(data[RAW_DRIVE], dtype=np.float64)
    if g.shape != data["responses"].shape:
        raise BoundError(path, RAW_DRIVE, f"shape {g.shape}, expected {data['responses'].shape} (trials, neurons)",
                         "the file is inconsistent: simulate it again with --store-raw-drive")
    if not np.all(np.isfinite(g)):
        raise BoundError(path, RAW_DRIVE, "holds NaN or infinite values", "simulate the data again")
    data[RAW_DRIVE] = g
    return data


def basis(g, mean, sd, knots):
    """(trials, neurons, N_KNOTS + 1): standardised g and its hinges at the knots (neurons, N_KNOTS)."""
    z = (g - mean) / sd
    return np.concatenate([z[:, :, None], np.maximum(z[:, :, None] - knots[None, :, :], 0)], axis=2)


def fit_and_predict(g, responses, tiers, test_inverse, n_test_images):
    """Correlations with the repeat average of one block of neurons, and each neuron's chosen penalty factor."""
    train, val, test = tiers == "train", tiers == "validation", tiers == "test"
    mean, sd = g[train].mean(axis=0), g[train].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)  # a constant drive: a flat basis, the prediction is the training mean
    quantiles = np.arange(1, N_KNOTS + 1) / (N_KNOTS + 1)
    knots = np.quantile((g[train] - mean) / sd, quantiles, axis=0).T  # (neurons, N_KNOTS)

    X = basis(g[train], mean, sd, knots)  # (trials, neurons, p)
    x_mean = X.mean(axis=0)
    X -= x_mean
    y_mean = responses[train].mean(axis=0)
    gram = np.einsum("tnp,tnq->npq", X, X)
    xty = np.einsum("tnp,tn->np", X, responses[train] - y_mean)
    T = float(train.sum())
    p = X.shape[2]
    del X

    def fit(penalty):  # (neurons, p) for a scalar penalty or one per neuron
        lam = np.reshape(penalty, (-1, 1, 1)) * np.eye(p)
        return np.linalg.solve(gram + lam, xty[:, :, None])[:, :, 0]

    def predict(rows, coef):
        return np.einsum("tnp,np->tn", basis(g[rows], mean, sd, knots) - x_mean, coef) + y_mean

    grid = PENALTY_GRID * T
    val_r = np.stack([pearson_columns(predict(val, fit(lam)), responses[val]) for lam in grid])
    # Highest validation correlation; on ties (e.g. a silent neuron) the strongest penalty.
    best = len(grid) - 1 - np.argmax(val_r[::-1], axis=0)
    # One prediction per distinct test image, from the drive of its trials (equal over its repeats; a drive that
    # is not a function of the image, e.g. shuffled across trials, is averaged).
    per_trial = predict(test, fit(grid[best]))
    prediction = np.zeros((n_test_images, per_trial.shape[1]))
    np.add.at(prediction, test_inverse, per_trial)
    prediction /= np.bincount(test_inverse, minlength=n_test_images)[:, None]
    return repeat_average_correlations(prediction, responses[test], test_inverse), PENALTY_GRID[best]


def learnability(data, block=200):
    t0 = time.time()
    tiers, responses, g = data["tiers"], data["responses"], data[RAW_DRIVE]
    test = np.flatnonzero(tiers == "test")
    test_images, inverse = np.unique(data["image_row"][test], return_inverse=True)
    n = responses.shape[1]
    r, penalty = np.zeros(n), np.zeros(n)
    for start in range(0, n, block):  # blocks of neurons bound the (trials, neurons, basis) arrays
        cols = slice(start, min(start + block, n))
        r[cols], penalty[cols] = fit_and_predict(g[:, cols], responses[:, cols], tiers, inverse, len(test_images))
    mean_ceiling = float(data["ceiling"].mean())
    return dict(file=data["path"], learnability_correlation=float(r.mean()), ceiling=mean_ceiling,
                fraction_of_ceiling=float(r.mean() / mean_ceiling), n_basis=N_KNOTS + 1, n_neurons=int(n),
                n_train_trials=int(np.sum(tiers == "train")), n_test_images=int(len(test_images)),
                penalty_median=float(np.median(penalty)), seconds=round(time.time() - t0, 1),
                by=fractions_by_group(data, r))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", help="a digital-V1 dataset written by `v1sysid simulate --store-raw-drive`")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the line")
    p.add_argument("--by-type", action="store_true", help="also print the fraction per cell type and modulator")
    args = p.parse_args(argv)
    try:
        if not os.path.exists(args.data):
            raise BoundError(args.data, "file", "no such file", "pass a dataset written by `v1sysid simulate "
                             "--store-raw-drive`", exit_code=3)
        res = learnability(read(args.data))
    except BoundError as e:
        print(f"learnability.py: error: {e}", file=sys.stderr)
        return e.exit_code
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"learnability of {res['file']}: test correlation {res['learnability_correlation']:.3f}, mean ceiling "
          f"{res['ceiling']:.3f}, fraction of the ceiling {res['fraction_of_ceiling']:.3f} (the true raw drive g, "
          f"a {res['n_basis']}-piece linear readout per neuron fitted on the noisy training responses, "
          f"{res['n_neurons']} neurons, {res['seconds']:.0f} s)")
    if args.by_type:
        print_by_group(res["by"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
