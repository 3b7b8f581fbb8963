# Attribution of the bootstrap shift of the levels (interim analysis of the test phase): per seed, the point value
# against the mean over 2,000 draws of (a) photographs only, (b) neurons only, (c) both, for roteq_4x8 and cnn_32 at
# 25 % on the main population, both metrics. Uses analysis/replication.py's own loading and per-draw arithmetic.
#   /usr/bin/python3 docs/replication/interim-2026-12-07/bias_check.py MANIFEST WORK V1SYSID
# (run on 2026-12-07 with /work/runs/replication/interim_manifest.json, /work/runs/replication/work and the 74a7a97
# binary; the cached predictions in WORK are used, `predict` runs only for missing ones).
import os, sys, numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "analysis"))
import replication as R
if len(sys.argv) != 4:
    sys.exit(__doc__ if __doc__ else "usage: bias_check.py MANIFEST WORK V1SYSID")
m = R.read_manifest(sys.argv[1])
seeds, _ = R.load(m, sys.argv[2], sys.argv[3])
rng = np.random.default_rng(7)
K = 2000
for sd in seeds:
    t = sd.tiers["main"]
    keys = [k for k in sd.runs if k[0] == "main" and k[2] == 0.25]
    stacked = R._stack({k: sd.runs[k] for k in keys})
    n_ph, n_n = len(sd.photos), t.n_neurons
    ones_w = np.ones((1, len(t.image_ids))); ones_c = np.ones((1, n_n))
    point = R._arm_means(t, stacked, ones_w, ones_c)
    pc = rng.multinomial(n_ph, np.full(n_ph, 1 / n_ph), size=K).astype(float)[:, t.photo_column]
    nc = rng.multinomial(n_n, np.full(n_n, 1 / n_n), size=K).astype(float)
    photo = R._arm_means(t, stacked, pc, np.ones((K, n_n)))
    neuron = R._arm_means(t, stacked, np.ones((K, len(t.image_ids))), nc)
    both = R._arm_means(t, stacked, pc, nc)
    for k in keys:
        for metric in ("ecker", "lurz"):
            p = point[k][metric][0]
            print(f"seed {sd.seed} {k[1]:>6} {metric:5}: point {p:.4f}  photos {np.nanmean(photo[k][metric]) - p:+.4f}"
                  f"  neurons {np.nanmean(neuron[k][metric]) - p:+.4f}  both {np.nanmean(both[k][metric]) - p:+.4f}"
                  f"  (median shift both {np.nanmedian(both[k][metric]) - p:+.4f})")
