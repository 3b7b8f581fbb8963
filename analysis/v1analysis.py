"""Analysis functions behind analysis/report.py: Table 1 and Figures 2 to 6 of Ecker et al. 2019, the
digital-V1 recovery checks and the Lurz curves. Only numpy and h5py (matplotlib in the plotting functions).

Conventions (docs/formats.md):
- results.h5 (`v1sysid sweep`): one row per trial under trials/.
- checkpoint.h5: export/readout/features [N, C] (export/readouts/<key>/ for several datasets); for a rotation-equivariant core the channels are
  rotation-major, c = r * F + f (R rotations of F features), so a neuron's weights form an [R, F] table.
- gt/ (digital V1, `v1sysid simulate`): gt/cell_type bytes [N], gt/orientation radians in [0, pi) measured
  from +x towards +y (rows grow downwards: clockwise on the screen), NaN for non-oriented cells.

Definitions used here (the papers do not give formulas for all of them; these are ours, stated once):
- feature energy: e[n, f] = sum_r F[n, r*F+f]^2 / sum_{r,f'} F[n, r*F+f']^2 (Fig. 4); a neuron with all
  weights 0 has a row of NaN and no group.
- group of a neuron: argmax_f e[n, f].
- a weight is "non-zero" when its |value| is at least `rel_tol` (1 %) of the neuron's largest |weight|
  (the L1 penalty leaves small but not exactly zero weights).
- sign consistency of feature f (Fig. 5): over all non-zero weights w[n, r, f] of all neurons, the fraction
  with the majority sign, in [0.5, 1] (1: every neuron uses the feature with the same sign).
- preferred orientation: for neuron n in group f, rotation r_n = argmax_r |F[n, r*F+f]|. Rotation r turns the
  filter by r * 360 / R degrees counter-clockwise on the screen (reference-models.md §1.1), i.e. by
  -r * 360 / R degrees in gt/orientation's convention, so theta_n = theta_f - r_n * 2 pi / R (mod pi).
  The orientation theta_f of feature f itself is unknown: it is fitted per group as the circular mean
  (doubled angles) of gt + r_n * 2 pi / R over the group's oriented neurons. The error is the circular
  distance in [0, 90] degrees; chance (uniform) gives a mean of 45.
"""
import math
import os
import re
import warnings

import numpy as np

try:
    import h5py
except ImportError:  # pragma: no cover - Debian's python3-h5py is a dependency of the report
    h5py = None


def text(value):
    """bytes / numpy bytes / str -> str (h5py returns bytes for fixed-length strings)."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# results.h5
# ---------------------------------------------------------------------------------------------------------

# The columns trials/row_checksum covers, in order (docs/formats.md); hyperparameters/<name> in name order
# come after "seed".
_CHECKSUM_HEAD = ("trial_id", "architecture", "data_fraction", "seed")
_CHECKSUM_TAIL = ("status", "message", "best_val_loss", "test_correlation", "feve", "fraction_oracle", "iterations",
                  "wall_seconds", "rank", "host", "val_curve", "neuron_correlation")
FINISHED_STATUSES = ("ok", "diverged", "failed", "pruned")  # "pending" and "running" rows are not finished


# The hashed columns added after format 3, with the format that added them (src/sweep/results_file.cpp, kColumns).
_LATER_HASHED_COLUMNS = (("best_val_correlation", 5), ("val_correlation_curve", 6))


def row_checksums(trials, version=None):
    """64-bit FNV-1a of every row's stored bytes (little-endian numbers, fixed-width NUL-padded strings), the
    value `v1sysid sweep` writes to trials/row_checksum. `trials` is the h5py group trials/. version leaves out
    the columns of later formats (as a file of that format hashed its rows); None: every column present."""
    names = list(_CHECKSUM_HEAD)
    if "hyperparameters" in trials:
        names += ["hyperparameters/" + hp for hp in sorted(trials["hyperparameters"])]
    tail = list(_CHECKSUM_TAIL)
    if "steps" in trials:  # format_version 3 on
        tail.insert(tail.index("iterations") + 1, "steps")
    tail += [name for name, since in _LATER_HASHED_COLUMNS
             if name in trials and (version is None or since <= version)]
    names += tail
    n = trials["status"].shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    parts = []
    for name in names:
        a = trials[name][...]
        if a.dtype.kind in "iuf":
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        parts.append(np.ascontiguousarray(a).view(np.uint8).reshape(n, -1))
    # One byte position at a time over all rows at once: FNV-1a is sequential within a row, not across rows.
    columns = np.ascontiguousarray(np.concatenate(parts, axis=1).T).astype(np.uint64)
    h = np.full(n, 0xcbf29ce484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001b3)
    with np.errstate(over="ignore"):
        for byte in columns:
            h ^= byte
            h *= prime
    return h


def read_results(path):
    """All per-trial columns of a results file as numpy arrays (strings decoded). A finished row whose
    trials/row_checksum does not match its values (the file was damaged after the sweep wrote it) is reported
    with a warning and gets the status "damaged", so that nothing downstream counts it as finished."""
    out = {"hyperparameters": {}}
    with h5py.File(path, "r") as f:
        t = f["trials"]
        for name in t:
            obj = t[name]
            if name == "hyperparameters":
                for hp in obj:
                    out["hyperparameters"][hp] = obj[hp][...].astype(float)
                continue
            data = obj[...]
            if data.dtype.kind in "SO":
                data = np.array([text(v) for v in data])
            out[name] = data
        out["attrs"] = {k: text(v) if isinstance(v, (bytes, str)) else v for k, v in f.attrs.items()}
        if "row_checksum" in t:
            status = [str(s) for s in out["status"]]
            stored = t["row_checksum"][...]
            matches = stored == row_checksums(t)
            version = int(f.attrs.get("format_version", 6))
            if version < 6:  # an upgrade that stopped midway: either checksum
                matches |= stored == row_checksums(t, version=version)
            bad = [i for i, s in enumerate(status) if s in FINISHED_STATUSES and not matches[i]]
            for i in bad:
                warnings.warn(f"{path}: trial {i}: its row fails its checksum (trials/row_checksum): the file was "
                              "changed or damaged after the sweep wrote it; the trial is left out (rerun the sweep "
                              "to redo it)")
                status[i] = "damaged"
            out["status"] = np.array(status)
        else:
            warnings.warn(f"{path} has no row checksums (format_version 1): its rows are not verified")
    return out


def select_table(results, top=5):
    """Table 1, the rule of `v1sysid select`: per (architecture, data fraction) in order of first appearance,
    the best `ok` trial by its schedule's validation criterion, and the mean and sample SD (ddof 1; 0 for a
    single trial) of test correlation over the `top` best trials by it. The criterion ("ranked_by") is the
    validation loss, lowest first (Ecker's schedule), or, when every ok trial of the group has a finite
    best_val_correlation (Lurz's schedule, results format 5 on), the validation correlation, highest first."""
    arch = results["architecture"]
    status = results["status"]
    val = results["best_val_loss"]
    val_corr = results.get("best_val_correlation", np.full(len(arch), np.nan))
    corr = results["test_correlation"]
    frac = results["data_fraction"]
    rows, members = [], []
    for i in range(len(arch)):
        key = (arch[i], float(frac[i]))
        for g, row in enumerate(rows):
            if (row["architecture"], row["data_fraction"]) == key:
                break
        else:
            rows.append({"architecture": key[0], "data_fraction": key[1], "trials_total": 0})
            members.append([])
            g = len(rows) - 1
        rows[g]["trials_total"] += 1
        if status[i] == "ok" and np.isfinite(val[i]):
            members[g].append(i)
    for row, m in zip(rows, members):
        row["trials_ok"] = len(m)
        by_correlation = bool(m) and all(np.isfinite(val_corr[i]) for i in m)
        row["ranked_by"] = "validation correlation" if by_correlation else "validation loss"
        # stable, like std::stable_sort
        m = sorted(m, key=(lambda i: -val_corr[i]) if by_correlation else (lambda i: val[i]))
        row["ranked"] = m
        if not m:
            row["best_trial"] = -1
            continue
        best = m[0]
        k = min(max(top, 1), len(m))
        top_corr = np.array([corr[i] for i in m[:k]], dtype=float)
        row.update(best_trial=int(best), best_val_loss=float(val[best]), best_test_correlation=float(corr[best]),
                   best_val_correlation=float(val_corr[best]),
                   top_count=k, top_mean=float(top_corr.mean()),
                   top_sd=float(top_corr.std(ddof=1)) if k > 1 else 0.0,
                   best_hyperparameters={n: float(v[best]) for n, v in results["hyperparameters"].items()})
    return rows


def table_markdown(rows, top=5):
    lines = ["| architecture | data fraction | trials ok | ranked by | best val loss | best val corr | "
             f"test corr (best) | test corr top-{top} (mean +- SD) | best hyperparameters |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["best_trial"] < 0:
            lines.append(f"| {r['architecture']} | {r['data_fraction']:g} | 0/{r['trials_total']} | - | - | - | - | - "
                         "| - |")
            continue
        hp = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["best_hyperparameters"].items()))
        val_corr = f"{r['best_val_correlation']:.4f}" if np.isfinite(r["best_val_correlation"]) else "-"
        lines.append(f"| {r['architecture']} | {r['data_fraction']:g} | {r['trials_ok']}/{r['trials_total']} | "
                     f"{r['ranked_by']} | {r['best_val_loss']:.4f} | {val_corr} | {r['best_test_correlation']:.3f} | "
                     f"{r['top_mean']:.3f} +- {r['top_sd']:.3f} | {hp} |")
    return "\n".join(lines)


def last_layer_features(architecture, hyperparameters=None):
    """Number of last-layer features of an architecture: a drawn hyperparameter whose name ends in
    `features` or `channels` wins; else the last number of the name after dropping rotation multipliers
    (`roteq_16x8-16x8-32x8` -> 32, `cnn_128_128_256` -> 256, `roteq_16` -> 16). None when there is none."""
    for name, value in (hyperparameters or {}).items():
        if re.search(r"(features|channels)$", name) and np.isfinite(value):
            return int(value)
    name = re.sub(r"x\d+", "", architecture)
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def config_features(config_text):
    """Number of last-layer features in a resolved model config (results.h5 trials/config): core.features[-1]
    for roteq (per rotation), else core.channels[-1]. None when the text names neither."""
    import yaml
    core = (yaml.safe_load(config_text or "") or {}).get("core") or {}
    values = core.get("features" if core.get("kind") == "roteq" else "channels")
    if isinstance(values, list):
        values = values[-1] if values else None
    return int(values) if values is not None else None


def family(architecture):
    """Architecture family for grouping curves: the name up to its first digit or separator (roteq, cnn)."""
    m = re.match(r"[A-Za-z]+", architecture)
    return m.group(0).lower() if m else architecture


def features_vs_loss(results, top=5):
    """Fig. 2 data: per architecture at data fraction 1 (or the largest present): (family, features,
    best val loss, best test correlation) and the group's ranking criterion (select_table's "ranked_by": the
    validation loss, or the validation correlation for Lurz's schedule) with its value for the best trial
    ("best_criterion") and for the top-k trials in rank order ("top_criterion")."""
    rows = select_table(results, top)
    if not rows:
        return []
    full = max(r["data_fraction"] for r in rows)
    out = []
    for r in rows:
        if r["data_fraction"] != full or r["best_trial"] < 0:
            continue
        i = r["best_trial"]
        hp = {n: v[i] for n, v in results["hyperparameters"].items()}
        # The stored config when the file has one (format 3); the architecture's name for older files.
        configs = results.get("config")
        k = config_features(configs[i]) if configs is not None and configs[i] else None
        if k is None:
            k = last_layer_features(r["architecture"], hp)
        if k is None:
            continue
        by_correlation = r["ranked_by"] == "validation correlation"
        criterion = results["best_val_correlation"] if by_correlation else results["best_val_loss"]
        out.append({"architecture": r["architecture"], "family": family(r["architecture"]), "features": k,
                    "best_val_loss": r["best_val_loss"], "ranked_by": r["ranked_by"],
                    "best_criterion": float(criterion[i]),
                    "top_criterion": [float(criterion[j]) for j in r["ranked"][:top]],
                    "best_test_correlation": r["best_test_correlation"]})
    return out


def correlation_vs_fraction(results, top=5):
    """Fig. 3 data: per architecture, sorted by data fraction: (fraction, best test corr, top-k mean, SD)."""
    curves = {}
    for r in select_table(results, top):
        if r["best_trial"] < 0:
            continue
        curves.setdefault(r["architecture"], []).append(
            (r["data_fraction"], r["best_test_correlation"], r["top_mean"], r["top_sd"]))
    return {a: sorted(v) for a, v in curves.items()}


# ---------------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------------

def _config_rotations(config_text):
    """(core kind, rotations) from a checkpoint's resolved YAML config."""
    try:
        import yaml
        cfg = yaml.safe_load(config_text) or {}
        core = cfg.get("core", {}) or {}
        kind = str(core.get("kind", "cnn"))
        rotations = core.get("num_rotations", core.get("rotations", 8 if kind == "roteq" else 1))
        return kind, int(rotations)
    except ImportError:  # pragma: no cover - python3-yaml is normally installed with Debian's python3
        kind = re.search(r"^\s*kind:\s*(\w+)", config_text, re.M)
        kind = kind.group(1) if kind else "cnn"
        rot = re.search(r"^\s*(?:num_)?rotations:\s*(\d+)", config_text, re.M)
        return kind, int(rot.group(1)) if rot else (8 if kind == "roteq" else 1)


def export_readout(f, data_key=None, where="checkpoint"):
    """(readout group, preprocessing group, data key) of an open checkpoint's export/ (docs/formats.md).

    A one-readout model has export/readout and export/preprocessing (data key None; a data_key is then an
    error). A model trained on several datasets has export/readouts/<key>/ (attribute data_keys on export/)
    and each readout's preprocessing in readouts/<key>/preprocessing/; data_key must name one of them.
    Anything else is a ValueError naming the file, the data keys and the fix."""
    export = f["export"] if "export" in f else None
    if export is None:
        raise ValueError(f"{where}: no export/ group; is this a checkpoint written by 'v1sysid train'?")
    if "readout" in export:
        if data_key is not None:
            raise ValueError(f"{where}: the model has a single readout (export/readout); leave out the data key "
                             f"('{data_key}' was given)")
        return export["readout"], export["preprocessing"], None
    if "readouts" not in export:
        raise ValueError(f"{where}: export/ has neither readout/ nor readouts/; this export layout is not "
                         "supported (re-export the checkpoint with this v1sysid)")
    keys = [k for k in text(export.attrs.get("data_keys", "")).split(",") if k] or sorted(export["readouts"].keys())
    if data_key is None:
        raise ValueError(f"{where}: the model has one readout per dataset (data keys {', '.join(keys)}); "
                         "choose one with data_key= (report.py / rf: --data-key)")
    if data_key not in export["readouts"]:
        raise ValueError(f"{where}: no readout for data key '{data_key}' (data keys {', '.join(keys)})")
    pre = f"readouts/{data_key}/preprocessing"
    if pre not in f:
        raise ValueError(f"{where}: {pre} is missing (the response scales of readout '{data_key}'); "
                         "re-save the checkpoint with this v1sysid")
    return export["readouts"][data_key], f[pre], data_key


def load_readout(path, data_key=None):
    """The readout of a checkpoint's export/ group (the one of data_key for a model trained on several
    datasets) plus what the analysis needs from its config."""
    with h5py.File(path, "r") as f:
        r, pre, _ = export_readout(f, data_key, path)
        out = {"kind": text(r.attrs.get("kind", "factorized")),
               "features": r["features"][...].astype(np.float64),
               "bias": r["bias"][...].astype(np.float64),
               "response_std": pre["response_std"][...].astype(np.float64)}
        for name in ("mask", "mu", "sigma"):
            if name in r:
                out[name] = r[name][...].astype(np.float64)
        config = text(f.attrs.get("config", ""))
    out["config"] = config
    out["core_kind"], out["rotations"] = _config_rotations(config)
    out["positive_features"] = bool(re.search(r"positive_features:\s*true", config))
    return out


def weights_by_rotation(features, rotations):
    """[N, R*F] rotation-major feature weights -> [N, R, F]."""
    n, c = features.shape
    if rotations < 1 or c % rotations:
        raise ValueError(f"{c} feature weights are not a multiple of {rotations} rotations")
    return features.reshape(n, rotations, c // rotations)


def feature_energy(features, rotations):
    """Fig. 4: e[n, f] = sum_r w[n, r, f]^2, normalised to sum 1 per neuron (NaN rows for all-zero neurons)."""
    w = weights_by_rotation(np.asarray(features, dtype=np.float64), rotations)
    e = (w ** 2).sum(axis=1)
    total = e.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, e / np.where(total > 0, total, 1), np.nan)


def group_neurons(energy):
    """Group = strongest feature; -1 for neurons without weights."""
    valid = np.isfinite(energy).all(axis=1)
    groups = np.full(energy.shape[0], -1, dtype=np.int64)
    groups[valid] = np.argmax(energy[valid], axis=1)
    return groups


def features_above(energy, threshold=0.05):
    """Number of features with more than `threshold` of a neuron's energy (NaN rows give 0)."""
    return (np.nan_to_num(energy, nan=0.0) > threshold).sum(axis=1)


def sign_consistency(features, rotations, rel_tol=0.01):
    """Fig. 5: per feature, (fraction of its non-zero weights with the majority sign, fraction positive,
    number of non-zero weights); NaN where a feature has none."""
    w = weights_by_rotation(np.asarray(features, dtype=np.float64), rotations)
    scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1)[:, None, None]
    nonzero = (np.abs(w) >= rel_tol * scale) & (scale > 0)
    F = w.shape[2]
    consistency, positive, count = np.full(F, np.nan), np.full(F, np.nan), np.zeros(F, dtype=np.int64)
    for f in range(F):
        v = w[:, :, f][nonzero[:, :, f]]
        count[f] = v.size
        if v.size:
            positive[f] = np.mean(v > 0)
            consistency[f] = max(positive[f], 1 - positive[f])
    return consistency, positive, count


def adjusted_rand_index(labels_a, labels_b):
    """Hubert and Arabie's adjusted Rand index of two labelings (any hashable labels)."""
    a = np.unique(np.asarray(labels_a), return_inverse=True)[1]
    b = np.unique(np.asarray(labels_b), return_inverse=True)[1]
    n = a.size
    if n != b.size:
        raise ValueError("labelings of different lengths")
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    comb2 = lambda x: x * (x - 1) / 2.0
    index = comb2(table).sum()
    sum_a = comb2(table.sum(axis=1)).sum()
    sum_b = comb2(table.sum(axis=0)).sum()
    expected = sum_a * sum_b / comb2(n) if n > 1 else 0.0
    maximum = 0.5 * (sum_a + sum_b)
    if maximum == expected:  # both labelings trivial (one cluster each, or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def confusion_matrix(groups, cell_types):
    """Counts [n_groups, n_types] with the sorted group ids and type names."""
    g_ids = sorted(set(int(g) for g in groups))
    t_names = sorted(set(cell_types))
    m = np.zeros((len(g_ids), len(t_names)), dtype=np.int64)
    gi = {g: i for i, g in enumerate(g_ids)}
    ti = {t: i for i, t in enumerate(t_names)}
    for g, t in zip(groups, cell_types):
        m[gi[int(g)], ti[t]] += 1
    return m, g_ids, t_names


def circular_mean_axial(angles):
    """Mean of axial angles (period pi) via doubled angles; NaN for an empty set."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.size == 0:
        return np.nan
    return (0.5 * np.angle(np.exp(2j * angles).mean())) % np.pi


def axial_error_deg(a, b):
    """Circular distance between axial angles (radians, period pi), in degrees in [0, 90]."""
    d = np.abs((np.asarray(a) - np.asarray(b) + np.pi / 2) % np.pi - np.pi / 2)
    return np.degrees(d)


def strongest_rotation(features, rotations, groups):
    """Per neuron, argmax_r |w[n, r, group_n]| (-1 without a group)."""
    w = weights_by_rotation(np.asarray(features, dtype=np.float64), rotations)
    r = np.full(w.shape[0], -1, dtype=np.int64)
    ok = groups >= 0
    r[ok] = np.argmax(np.abs(w[ok, :, groups[ok]]), axis=1)
    return r


def orientation_recovery(features, rotations, groups, gt_orientation, direction=-1):
    """Preferred orientation from the strongest rotation against the true one (see the module docstring).
    direction: -1 when rotation r turns the filter counter-clockwise on the screen (the reference's
    convention) and gt angles grow clockwise; +1 for the opposite. Returns a dict with per-neuron predicted
    angles, errors in degrees, per-group offsets, and summary statistics over oriented grouped neurons."""
    gt = np.asarray(gt_orientation, dtype=np.float64)
    r = strongest_rotation(features, rotations, groups)
    step = direction * 2 * np.pi / rotations
    ok = (groups >= 0) & np.isfinite(gt)
    offsets = {}
    predicted = np.full(gt.shape, np.nan)
    for g in np.unique(groups[ok]):
        sel = ok & (groups == g)
        offsets[int(g)] = circular_mean_axial(gt[sel] - r[sel] * step)
        predicted[sel] = (offsets[int(g)] + r[sel] * step) % np.pi
    err = axial_error_deg(predicted[ok], gt[ok])
    return {"predicted": predicted, "error_deg": err, "offsets": offsets, "neurons": int(ok.sum()),
            "mean_error_deg": float(err.mean()) if err.size else float("nan"),
            "median_error_deg": float(np.median(err)) if err.size else float("nan")}


def sparsest_well_predicted(energy, groups, correlation=None, per_group=16):
    """Fig. 6: per group, up to `per_group` neurons with the largest share of energy in their strongest
    feature (the sparsest), among neurons whose test correlation is at least the median over neurons
    (all neurons when correlation is None)."""
    top_share = np.nan_to_num(np.nanmax(np.where(np.isfinite(energy), energy, -np.inf), axis=1), nan=0.0,
                              neginf=0.0)
    eligible = groups >= 0
    if correlation is not None:
        c = np.asarray(correlation, dtype=np.float64)
        eligible &= np.isfinite(c) & (c >= np.nanmedian(c))
    chosen = {}
    for g in np.unique(groups[groups >= 0]):
        idx = np.flatnonzero(eligible & (groups == g))
        chosen[int(g)] = idx[np.argsort(-top_share[idx], kind="stable")][:per_group].tolist()
    return chosen


# ---------------------------------------------------------------------------------------------------------
# datasets (digital V1 ground truth, test responses)
# ---------------------------------------------------------------------------------------------------------

def read_ground_truth(path):
    """gt/ of a digital-V1 StaticImageSet .h5 (None when absent)."""
    if not path or not os.path.isfile(path):
        return None
    with h5py.File(path, "r") as f:
        if "gt" not in f:
            return None
        g = f["gt"]
        out = {}
        if "cell_type" in g:
            out["cell_type"] = np.array([text(v) for v in g["cell_type"][...]])
        for name in ("orientation", "position", "ceiling_correlation", "fev"):
            if name in g:
                out[name] = g[name][...]
    return out


def test_correlation_per_neuron(predictions, image_ids, dataset_path):
    """Per-neuron Pearson r between test-tier predictions and the repeat-averaged test responses (0 where
    an SD is below 1e-5, as in Ecker's code)."""
    with h5py.File(dataset_path, "r") as f:
        tiers = np.array([text(v) for v in f["tiers"][...]])
        rows = np.flatnonzero(tiers == "test")
        responses = np.clip(f["responses"][...][rows].astype(np.float64), 0, None)
        ids = f["item_info/frame_image_id"][...][rows]
    unique = np.unique(ids)
    mean_resp = np.stack([responses[ids == u].mean(axis=0) for u in unique])
    pred_ids = np.asarray(image_ids)
    mean_pred = np.stack([np.asarray(predictions, dtype=np.float64)[pred_ids == u].mean(axis=0) for u in unique])
    a = mean_pred - mean_pred.mean(axis=0)
    b = mean_resp - mean_resp.mean(axis=0)
    sa, sb = a.std(axis=0), b.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).mean(axis=0) / (sa * sb)
    r[(sa <= 1e-5) | (sb <= 1e-5)] = 0.0
    return r
