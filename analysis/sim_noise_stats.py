#!/usr/bin/env python3
"""Model-free noise statistics of a simulated dataset (`v1sysid simulate`), the numbers the digital V1's noise
is calibrated to (docs/sim-calibration.md). No model is read: only the file's responses and its gt/.

  gt/fev           the simulator's analytic single-trial FEV (noise.hpp): median, fraction < 0.05, percentiles
  data FEV         the same from the test repeats alone: (total var - mean repeat var) / total var per neuron
  oracle           leave-one-out oracle: per neuron, corr over all test trials of a trial's response with the
                   mean of the other repeats of its image (SENSORIUM's oracle score)
  sparseness       lifetime sparseness (Vinje & Gallant 2000) of single-trial training responses,
                   (1 - (mean r)^2 / mean r^2) / (1 - 1/N), and the fraction of zero responses
  behavior         the latents' mean and SD, and the log-SD of each neuron's shared gain s |w_j|

usage: python3 analysis/sim_noise_stats.py FILE.h5 [--json OUT.json]
"""
import argparse
import json

import h5py
import numpy as np


def stats(path):
    with h5py.File(path, "r") as f:
        responses = f["responses"][()].astype(np.float64)
        tiers = np.array([t.decode() if isinstance(t, bytes) else t for t in f["tiers"][()]])
        image_ids = f["item_info/frame_image_id"][()]
        fev = f["gt/fev"][()].astype(np.float64)
        behavior = f["behavior"][()] if "behavior" in f else None
        loadings = f["gt/gain_loadings"][()] if "gt/gain_loadings" in f else None
        log_sd = float(f["gt"].attrs["gain_log_sd"]) if "gain_log_sd" in f["gt"].attrs else 0.0

    out = {"file": path, "n_neurons": int(fev.size)}
    out["gt_fev"] = {"median": float(np.median(fev)), "fraction_below_0.05": float(np.mean(fev < 0.05)),
                     "p90": float(np.percentile(fev, 90)), "p95": float(np.percentile(fev, 95)),
                     "p99": float(np.percentile(fev, 99)), "max": float(fev.max())}

    test = tiers == "test"
    r, ids = responses[test], image_ids[test]
    images = np.unique(ids)
    groups = [r[ids == i] for i in images]
    repeat_var = np.mean([g.var(0, ddof=1) for g in groups], axis=0)
    total_var = r.var(0, ddof=1)
    data_fev = np.where(total_var > 0, (total_var - repeat_var) / np.where(total_var > 0, total_var, 1), 0)
    out["data_fev"] = {"median": float(np.median(data_fev)), "fraction_below_0.05": float(np.mean(data_fev < 0.05))}

    loo = np.empty_like(r)
    for i, g in zip(images, groups):
        k = g.shape[0]
        loo[ids == i] = (g.sum(0, keepdims=True) - g) / (k - 1)
    rc, lc = r - r.mean(0), loo - loo.mean(0)
    denom = np.sqrt((rc ** 2).sum(0) * (lc ** 2).sum(0))
    oracle = np.where(denom > 0, (rc * lc).sum(0) / np.where(denom > 0, denom, 1), 0)
    out["oracle"] = {"median": float(np.median(oracle)), "mean": float(oracle.mean()),
                     "p10": float(np.percentile(oracle, 10)), "p90": float(np.percentile(oracle, 90))}

    train = responses[tiers == "train"]
    n_trials = train.shape[0]
    m1, m2 = train.mean(0), (train ** 2).mean(0)
    sparse = np.where(m2 > 0, (1 - m1 ** 2 / np.where(m2 > 0, m2, 1)) / (1 - 1 / n_trials), 0)
    out["sparseness"] = {"median": float(np.median(sparse)), "fraction_zero": float(np.mean(train == 0))}

    if behavior is not None:
        out["behavior"] = {"shape": list(behavior.shape), "mean": behavior.mean(0).tolist(),
                           "sd": behavior.std(0).tolist()}
        out["gain_log_sd"] = {"median": float(np.median(log_sd * np.linalg.norm(loadings, axis=1)))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    out = stats(args.file)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
