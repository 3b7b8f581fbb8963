#!/usr/bin/python3
"""Report of a v1sysid sweep: Table 1 and Figures 2 to 6 of Ecker et al. 2019, digital-V1 recovery, Lurz curves.

    /usr/bin/python3 analysis/report.py RESULTS.h5 [--checkpoint FILE] [--control FILE] [--checkpoint-dir DIR]
                                        [--rf rf.h5] [--data PATH] [--data-key KEY] [--exe v1sysid]
                                        [--insilico DIR] --out DIR

Writes DIR/report.md and DIR/*.png. What the inputs cannot support is skipped, and report.md says so.
  RESULTS.h5        results of `v1sysid sweep` (Table 1, Fig. 2, Fig. 3, Lurz readout comparison)
  --checkpoint      the model to analyse (Figs. 4-6, digital-V1 checks); default: the best trial of the
                    best architecture, found in --checkpoint-dir
  --control         the L2 (dense feature weights) control checkpoint for Fig. 4's histogram
  --checkpoint-dir  the sweep's --save-checkpoints folder: trial_<id>.h5 is trial <id>'s checkpoint; it is used
                    only when the trial id stored in it (or else its best validation loss) matches the results
  --rf              receptive fields from `v1sysid rf` (else they are computed with --exe when possible)
  --data            the dataset (gt/ for the digital-V1 checks and the ceiling with the shallow bound next to it,
                    read from DATA.shallow_bound.json or computed when quick; test responses for per-neuron
                    correlations)
  --data-key        the readout to analyse of a checkpoint trained on several datasets (else Figs. 4-6 are
                    skipped with the list of its data keys)
  --insilico        the --out folder of analysis/insilico.py (tuning, mei, ensemble): the in-silico table scored
                    against the ground truth and the MEI panels
Every file is written under a temporary name and renamed when complete; a failure (a full disk) ends with a
one-line error naming the file and a non-zero exit (7 for a full disk or an I/O error, 3 otherwise), and
leaves no report.md. Definitions: analysis/v1analysis.py.
"""
import argparse
import errno
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import v1analysis as va  # noqa: E402

import matplotlib  # noqa: E402
matplotlib.use("Agg")
try:
    import matplotlib.pyplot as plt  # noqa: E402
except OSError as e:  # its first start writes a font cache: a full disk or a size limit ends here
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    print(f"report.py: error: matplotlib could not start: writing its font cache in {matplotlib.get_cachedir()} "
          f"failed ({e.strerror or e}); free space there or point MPLCONFIGDIR to a writable folder", file=sys.stderr)
    sys.exit(7 if full else 3)

TOP = 5


def find_executable(explicit):
    if explicit:
        return explicit
    env = os.environ.get("V1SYSID_EXE")
    if env:
        return env
    for preset in ("cpu-release", "ci", "cpu-debug"):
        c = os.path.join(HERE, "..", "build", preset, "v1sysid")
        if os.path.exists(c):
            return c
    return None


CHECKPOINT_NAME = re.compile(r"trial_(\d+)\.h5")  # as `v1sysid sweep --save-checkpoints` names them


def checkpoints_by_trial(folder):
    """{trial id: path} of the files trial_<id>.h5 in folder (the sweep's --save-checkpoints folder)."""
    found = {}
    if not folder or not os.path.isdir(folder):
        return found
    for name in sorted(os.listdir(folder)):
        m = CHECKPOINT_NAME.fullmatch(name)
        if m:
            found[int(m.group(1))] = os.path.join(folder, name)
    return found


def trial_ids(results):
    """Trial id of each results row (the row index in files without trials/trial_id)."""
    n = len(results["architecture"])
    return [int(t) for t in results["trial_id"]] if "trial_id" in results else list(range(n))


def checkpoint_mismatch(path, results, row):
    """None when the checkpoint at path can be the model of results row `row`, else why not: the trial id
    stored in the checkpoint (root attribute trial_id) must be the row's, and, in checkpoints without one, its
    best validation loss (training/best_val_loss, written from the same number) must be the row's."""
    import h5py
    tid = trial_ids(results)[row]
    with h5py.File(path, "r") as f:
        if "trial_id" in f.attrs:
            stored = int(f.attrs["trial_id"])
            return None if stored == tid else f"{path} stores trial id {stored}, not {tid}"
        training = f["training"].attrs if "training" in f else {}
        if "best_val_loss" in training and "best_val_loss" in results:
            mine, theirs = float(training["best_val_loss"]), float(results["best_val_loss"][row])
            if not (mine == theirs or (np.isnan(mine) and np.isnan(theirs))):
                return (f"{path} has best validation loss {mine!r}, trial {tid} in the results {theirs!r}: it is "
                        f"not that trial's model (another sweep's checkpoint folder?)")
    return None


class OutputError(Exception):
    """A report file that could not be written: the path and the operating system's cause."""

    def __init__(self, path, error):
        self.path, self.error = path, error
        # The wording and exit statuses of v1sysid's throw_os_error (src/core/error.hpp).
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        what = ("disk full" if full else "I/O error" if error.errno == errno.EIO else
                "not allowed" if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "failed")
        self.exit_code = 7 if full or error.errno == errno.EIO else 3
        super().__init__(f"{what} while writing {path} ({error.strerror or error}); "
                         + ("free space on that file system (df -h) or write somewhere else (--out)" if full else
                            "check the folder and the file system, or write somewhere else (--out)"))


def write_atomically(path, write, binary=False):
    """Writes path through path.partial-<pid> in the same folder: write(f) fills the open file, which is then
    flushed, fsynced, closed and renamed over path. On any failure the temporary is removed and path is left
    as it was; an OSError becomes an OutputError naming path."""
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(path, e) from e
        raise


class Report:
    def __init__(self, out):
        self.out = out
        self.lines = []
        self.skipped = []
        self.numbers = {}
        try:
            os.makedirs(out, exist_ok=True)
            # A report.md of an earlier run would otherwise sit next to this run's figures (and pass for this
            # run's report) if this run stops before writing its own.
            if os.path.exists(os.path.join(out, "report.md")):
                os.remove(os.path.join(out, "report.md"))
        except OSError as e:
            raise OutputError(out, e) from e

    def add(self, *lines):
        self.lines.extend(lines)

    def skip(self, what, why):
        self.skipped.append(f"- {what}: {why}")

    def figure(self, fig, name, caption):
        fig.tight_layout()
        try:
            write_atomically(os.path.join(self.out, name), lambda f: fig.savefig(f, format="png", dpi=110),
                             binary=True)
        finally:
            plt.close(fig)
        self.add(f"![{caption}]({name})", "", f"*{caption}*", "")

    def write(self):
        text = "\n".join(self.lines)
        if self.skipped:
            text += "\n\n## Not in this report\n\n" + "\n".join(self.skipped) + "\n"
        write_atomically(os.path.join(self.out, "report.md"), lambda f: f.write(text + "\n"))


# ------------------------------------------------------------------------------------------------------------

def table1(rep, results):
    rows = va.select_table(results, TOP)
    rep.add("## Table 1: model selection", "",
            f"Best trial per architecture and data fraction by its schedule's validation criterion (the lowest "
            f"validation loss; Lurz schedule: the highest validation correlation); mean +- SD of the test correlation "
            f"over the {TOP} best trials by it (the rule of `v1sysid select`).", "",
            va.table_markdown(rows, TOP), "")
    return rows


def fig2(rep, results):
    data = va.features_vs_loss(results, TOP)
    families = sorted(set(d["family"] for d in data))
    if len(data) < 2:
        rep.skip("Fig. 2 (validation loss vs last-layer features)",
                 "needs at least two architectures whose number of features can be read from the name")
        return
    # One validation panel per ranking criterion present (Table 1's `ranked by`): the loss (Ecker's schedule), the
    # correlation (Lurz's); each group is drawn by the criterion it was ranked by, then the test correlation.
    criteria = [c for c in ("validation loss", "validation correlation") if any(d["ranked_by"] == c for d in data)]
    fig, axes = plt.subplots(1, len(criteria) + 1, figsize=(4.5 * (len(criteria) + 1), 3.6))
    panel = dict(zip(criteria, axes))
    for fam, color in zip(families, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        pts = sorted((d for d in data if d["family"] == fam), key=lambda d: d["features"])
        for criterion, ax in panel.items():
            mine = [d for d in pts if d["ranked_by"] == criterion]
            if not mine:
                continue
            ax.plot([d["features"] for d in mine], [d["best_criterion"] for d in mine], "o-", color=color, label=fam)
            for d in mine:
                ax.plot([d["features"]] * len(d["top_criterion"]), d["top_criterion"], ".", color=color,
                        markersize=3, alpha=0.6)
        axes[-1].plot([d["features"] for d in pts], [d["best_test_correlation"] for d in pts], "o-", color=color,
                      label=fam)
    for criterion, ax in panel.items():
        ax.set(xlabel="features in the last layer",
               ylabel="best validation loss (Poisson)" if criterion == "validation loss"
               else "best validation correlation", title=f"best (line) and top-{TOP} (dots)")
        ax.legend()
    axes[-1].set(xlabel="features in the last layer", ylabel="test correlation of the best model")
    shown = " and ".join(f"best {c}" for c in criteria)
    rep.add("## Fig. 2: performance vs number of features", "")
    rep.figure(fig, "fig2_features.png", f"{shown[0].upper() + shown[1:]} (the left panel"
               f"{'s' if len(criteria) > 1 else ''}) and test correlation (right) "
               f"against the number of last-layer features, each group by the criterion it is ranked by (Table 1's "
               f"`ranked by`: the loss for Ecker's schedule, the correlation for Lurz's); small dots: the top-{TOP} "
               "trials' values of it.")


def fig3(rep, results):
    curves = va.correlation_vs_fraction(results, TOP)
    curves = {a: c for a, c in curves.items() if len(c) >= 2}
    if not curves:
        rep.skip("Fig. 3 (test correlation vs training fraction)", "no architecture was trained at two or more "
                 "data fractions (add `grid: {data_fraction: [...]}` to the sweep)")
        return
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for arch, c in sorted(curves.items()):
        c = np.array(c)
        style = "-" if va.family(arch) == "roteq" else "--"
        ax.errorbar(c[:, 0] * 100, c[:, 2], yerr=c[:, 3], fmt="o" + style, capsize=3, label=arch)
    ax.set(xlabel="training data (%)", ylabel=f"test correlation (top-{TOP} mean +- SD)")
    ax.legend(fontsize=8)
    rep.add("## Fig. 3: data efficiency", "")
    lines = []
    for arch, c in sorted(curves.items()):
        lines.append(f"- {arch}: " + ", ".join(f"{f * 100:g} %: {m:.3f}" for f, _, m, _ in c))
    rep.add(*lines, "")
    rep.figure(fig, "fig3_data_fraction.png", "Test correlation against the fraction of training data "
               "(solid: rotation-equivariant, dashed: CNN).")


def lurz(rep, results):
    rows = [r for r in va.select_table(results, TOP) if r["best_trial"] >= 0]
    gauss = [r for r in rows if re.search(r"gauss", r["architecture"], re.I)]
    if gauss:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        names = [f"{r['architecture']} ({r['data_fraction']:g})" for r in rows]
        ax.barh(names, [r["top_mean"] for r in rows], xerr=[r["top_sd"] for r in rows],
                color=["C1" if r in gauss else "C0" for r in rows])
        ax.set(xlabel="test correlation (top-5 mean +- SD)")
        rep.add("## Lurz et al. 2021: readout comparison", "")
        rep.figure(fig, "lurz_readouts.png", "Gaussian (orange) against factorised readouts (blue).")
    else:
        rep.skip("Lurz readout comparison", "no architecture with 'gauss' in its name in the results")
    transfer = [r for r in rows if re.search(r"transfer", r["architecture"], re.I)]
    if not transfer:
        rep.skip("Lurz transfer curves", "no architecture with 'transfer' in its name in the results")


# ------------------------------------------------------------------------------------------------------------

SHALLOW_BOUND_QUICK = 6e6  # neurons x trials computed in the report: the demo preset's 1,000 x 5,400 take ~1 min


def shallow_bound_file(data):
    """Where `analysis/shallow_bound.py DATA --out` keeps the bound of DATA for the report."""
    return os.path.splitext(data)[0] + ".shallow_bound.json"


def digital_v1_room(rep, data, rows, same_dataset):
    """The ceiling of a digital V1 with the shallow bound (no learned core; analysis/shallow_bound.py) next to it:
    the room a learned core has. The bound is read from DATA.shallow_bound.json when that file was made from
    this DATA, else computed when the dataset is small enough to take about a minute."""
    try:
        gt = va.read_ground_truth(data)
    except (OSError, ValueError) as e:
        rep.skip("ceiling and shallow bound", f"{data}: cannot read gt/ ({e})")
        return
    if gt is None or "ceiling_correlation" not in gt:
        return  # not a digital V1: no ceiling to report
    import h5py
    import shallow_bound as sb
    ceiling = float(np.mean(gt["ceiling_correlation"]))
    res, source, why = None, None, None
    cached = shallow_bound_file(data)
    if os.path.isfile(cached):
        try:
            with open(cached) as f:
                saved = json.load(f)
            stat = os.stat(data)
            if saved.get("data_size") == stat.st_size and saved.get("data_mtime_ns") == stat.st_mtime_ns:
                res, source = saved, f"`{cached}`"
            else:
                why = f"{cached} was made from another version of {data}"
        except (OSError, ValueError) as e:
            why = f"{cached} cannot be read ({e})"
    if res is None:
        with h5py.File(data, "r") as f:
            size = f["responses"].shape[0] * f["responses"].shape[1] if "responses" in f else 0
        if size <= SHALLOW_BOUND_QUICK:
            try:
                res, source = sb.shallow_bound(sb.read_dataset(data)), "computed for this report"
            except sb.BoundError as e:
                why = str(e)
        elif why is None:
            why = f"{data} is large (about {size / SHALLOW_BOUND_QUICK:.0f} min to compute)"
    rep.add("## Digital V1: ceiling and shallow bound", "",
            f"- ceiling: mean over neurons of gt/ceiling_correlation **{ceiling:.3f}** (the correlation with the "
            f"repeat average that the true rates reach on this test design)")
    rep.numbers["mean_ceiling_correlation"] = ceiling
    if res is not None:
        rep.add(f"- shallow bound (fixed Gabor/DoG bank at the true RF centres, ridge readout; no learned core; "
                f"docs/shallow-bound.md): test correlation {res['shallow_bound_correlation']:.3f}, "
                f"**{res['fraction_of_ceiling']:.3f} of the ceiling** ({source})")
        rep.numbers["shallow_bound_fraction_of_ceiling"] = res["fraction_of_ceiling"]
    else:
        rep.add(f"- shallow bound: not computed ({why}); run `/usr/bin/python3 analysis/shallow_bound.py {data} "
                f"--out {cached}` and make the report again")
        rep.skip("shallow bound", why)
    if same_dataset:
        for r in rows:
            if r.get("best_trial", -1) >= 0 and ceiling > 0:
                rep.add(f"- {r['architecture']} (data fraction {r['data_fraction']:g}): best trial's test correlation "
                        f"{r['best_test_correlation']:.3f}, {r['best_test_correlation'] / ceiling:.3f} of the ceiling")
    rep.add("")


# ------------------------------------------------------------------------------------------------------------

def neuron_correlation(results, trial, checkpoint, data, exe):
    """Per-neuron test correlation of the analysed model: from the results file when its trial is known,
    else from `v1sysid predict` on --data."""
    if trial is not None and "neuron_correlation" in results:
        c = np.asarray(results["neuron_correlation"][trial], dtype=float)
        if np.isfinite(c).any():
            return c, f"trials/neuron_correlation of trial {trial}"
    if data and exe and os.path.isfile(data):
        with tempfile.TemporaryDirectory() as tmp:
            pred = os.path.join(tmp, "pred.h5")
            r = subprocess.run([exe, "predict", "--checkpoint", checkpoint, "--data", data, "--tier", "test",
                                "--out", pred], capture_output=True, text=True)
            if r.returncode == 0:
                import h5py
                with h5py.File(pred, "r") as f:
                    return (va.test_correlation_per_neuron(f["predictions"][...], f["image_ids"][...], data),
                            "v1sysid predict on the test tier of --data")
    return None, None


def rf_file_of(rf_path, checkpoint, data_key):
    """Whether rf_path exists and was computed from checkpoint (and readout data_key), by its attributes."""
    import h5py
    if not os.path.exists(rf_path):
        return False
    try:
        with h5py.File(rf_path, "r") as f:
            return (va.text(f.attrs.get("checkpoint", "")) == checkpoint
                    and (data_key is None or va.text(f.attrs.get("data_key", "")) == data_key))
    except OSError:  # a damaged file: compute it again
        return False


def receptive_fields(rf_path, checkpoint, exe, out, data_key=None):
    import h5py
    if not rf_path and exe:
        rf_path = os.path.join(out, "rf.h5")
        if not rf_file_of(rf_path, checkpoint, data_key):  # an earlier report's rf.h5 may be of another checkpoint
            key = ["--data-key", data_key] if data_key else []
            r = subprocess.run([exe, "rf", "--checkpoint", checkpoint, "--out", rf_path, "--force"] + key,
                               capture_output=True, text=True)
            if r.returncode != 0:
                return None, "v1sysid rf failed: " + r.stdout[-300:] + r.stderr[-300:]
    if not rf_path or not os.path.exists(rf_path):
        return None, "no --rf file and no v1sysid executable to compute one"
    with h5py.File(rf_path, "r") as f:
        rf = f["rf"][...]
        neurons = f["neurons"][...]
    full = {int(n): rf[i] for i, n in enumerate(neurons)}
    return full, rf_path


def checkpoint_figures(rep, results, checkpoint, control, trial, args, exe):
    ro = va.load_readout(checkpoint, args.data_key)
    R = ro["rotations"]
    energy = va.feature_energy(ro["features"], R)
    groups = va.group_neurons(energy)
    n_feat = energy.shape[1]
    rep.add(f"## Feature weights of `{checkpoint}`", "",
            f"Core `{ro['core_kind']}` with {R} rotation(s) x {n_feat} features, readout `{ro['kind']}`, "
            f"{energy.shape[0]} neurons; groups = strongest feature after marginalising over rotations.", "")
    # Fig. 4
    order = np.lexsort((-np.nan_to_num(energy.max(axis=1)), groups))
    order = order[groups[order] >= 0]
    counts = va.features_above(energy, 0.05)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    axes[0].imshow(energy[order].T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    axes[0].set_yticks(range(n_feat) if n_feat <= 16 else range(0, n_feat, max(1, n_feat // 8)))
    axes[0].set(xlabel="neurons (grouped by strongest feature)", ylabel="feature",
                title="feature energy (sum of squares over rotations, sums to 1)")
    bins = np.arange(0, n_feat + 2) - 0.5
    axes[1].hist(counts[groups >= 0], bins=bins, alpha=0.7, label="model", density=True)
    summary = f"- features with > 5 % of the energy: median {np.median(counts[groups >= 0]):.0f}, mean {counts[groups >= 0].mean():.2f}"
    c_ro, why_no_control = None, "no --control checkpoint (L2 feature-weight control) given or found"
    if control:
        try:
            c_ro = va.load_readout(control, args.data_key)
        except ValueError as e:
            why_no_control = str(e)
    if c_ro is not None:
        c_energy = va.feature_energy(c_ro["features"], c_ro["rotations"])
        c_counts = va.features_above(c_energy, 0.05)
        ok = va.group_neurons(c_energy) >= 0
        axes[1].hist(c_counts[ok], bins=np.arange(0, c_energy.shape[1] + 2) - 0.5, alpha=0.5, label="L2 control",
                     density=True)
        summary += f"; L2 control: median {np.median(c_counts[ok]):.0f}, mean {c_counts[ok].mean():.2f}"
    else:
        rep.skip("Fig. 4 L2 control histogram", why_no_control)
    axes[1].set(xlabel="features with > 5 % energy", ylabel="fraction of neurons")
    axes[1].legend()
    sizes = np.bincount(groups[groups >= 0], minlength=n_feat)
    rep.add("### Fig. 4: sparse feature weights", "", summary,
            "- group sizes: " + ", ".join(f"{f}: {s}" for f, s in enumerate(sizes) if s), "")
    rep.numbers["median_features_above_5pct"] = float(np.median(counts[groups >= 0]))
    rep.figure(fig, "fig4_feature_weights.png", "Feature weights marginalised over orientation (left) and the "
               "number of features with more than 5 % of a neuron's energy (right).")
    # Fig. 5
    consistency, positive, nz = va.sign_consistency(ro["features"], R)
    if ro["positive_features"]:
        rep.skip("Fig. 5 (sign consistency)", "the model has positive feature weights by construction")
    else:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        f_idx = np.arange(n_feat)
        ax.bar(f_idx, np.nan_to_num(positive), color="C3", label="positive")
        ax.bar(f_idx, 1 - np.nan_to_num(positive), bottom=np.nan_to_num(positive), color="C0", label="negative")
        ax.set(xlabel="feature", ylabel="fraction of non-zero weights", ylim=(0, 1))
        ax.legend(fontsize=8)
        rep.add("### Fig. 5: sign consistency", "",
                f"- mean sign consistency over features (fraction of non-zero weights with the majority sign): "
                f"{np.nanmean(consistency):.3f}", "")
        rep.numbers["mean_sign_consistency"] = float(np.nanmean(consistency))
        rep.figure(fig, "fig5_sign_consistency.png", "Sign of the non-zero feature weights per feature.")
    # Fig. 6
    corr, corr_source = neuron_correlation(results, trial, checkpoint, args.data, exe)
    rfs, rf_source = receptive_fields(args.rf, checkpoint, exe, args.out, args.data_key)
    if rfs is None:
        rep.skip("Fig. 6 (receptive fields)", rf_source)
    else:
        chosen = va.sparsest_well_predicted(energy, groups, corr, 16)
        chosen = {g: [n for n in idx if n in rfs] for g, idx in chosen.items()}
        chosen = {g: idx for g, idx in chosen.items() if idx}
        shown = sorted(chosen, key=lambda g: -sizes[g])[:12]
        fig, axes = plt.subplots(len(shown), 16, figsize=(16 * 0.9, len(shown) * 0.6 + 0.4), squeeze=False)
        for row, g in enumerate(shown):
            for col in range(16):
                ax = axes[row, col]
                ax.axis("off")
                if col < len(chosen[g]):
                    rf = rfs[chosen[g][col]]
                    lim = np.abs(rf).max() or 1
                    ax.imshow(rf, cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[row, 0].text(-0.1, 0.5, f"f{g}", transform=axes[row, 0].transAxes, ha="right", va="center")
        rep.add("### Fig. 6: receptive fields per group", "",
                f"Gradient of each prediction at a gray image (`{rf_source}`); per group (rows, the "
                f"{len(shown)} largest) the 16 neurons with the largest energy share in their strongest feature"
                + (f" among those with test correlation at or above the median ({corr_source})." if corr is not None
                   else " (no per-neuron correlations available: all neurons eligible)."), "")
        rep.figure(fig, "fig6_receptive_fields.png", "Receptive fields of the sparsest well-predicted neurons "
                   "of each group (red: excitatory, blue: suppressive).")
    # Digital V1
    gt = va.read_ground_truth(args.data)
    if gt is None:
        rep.skip("digital-V1 checks (ARI, confusion matrix, orientation)", "no --data with a gt/ group")
        return
    rep.add("## Digital V1: groups against the true cell types", "")
    ok = groups >= 0
    if "cell_type" in gt and len(gt["cell_type"]) == len(groups):
        ari = va.adjusted_rand_index(groups[ok], gt["cell_type"][ok])
        m, g_ids, t_names = va.confusion_matrix(groups[ok], gt["cell_type"][ok])
        rep.numbers["ari"] = ari
        rep.add(f"- adjusted Rand index of the groups against gt/cell_type: **{ari:.3f}** "
                f"({ok.sum()} neurons, {len(g_ids)} groups, {len(t_names)} types; 0 = chance, 1 = identical)", "")
        rep.add("| group | " + " | ".join(t_names) + " |", "|---|" + "---|" * len(t_names))
        for gi, g in enumerate(g_ids):
            rep.add(f"| f{g} | " + " | ".join(str(v) for v in m[gi]) + " |")
        rep.add("")
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(t_names), 0.9 + 0.28 * len(g_ids)))
        frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(frac, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(t_names)))
        ax.set_xticklabels(t_names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(g_ids)))
        ax.set_yticklabels([f"f{g}" for g in g_ids], fontsize=7)
        for gi in range(len(g_ids)):
            for ti in range(len(t_names)):
                if m[gi, ti]:
                    ax.text(ti, gi, str(m[gi, ti]), ha="center", va="center", fontsize=6, color="w")
        ax.set(title=f"groups vs cell types (ARI {ari:.2f})")
        rep.figure(fig, "dv1_confusion.png", "Neurons per group (rows) and true cell type (columns); colour: "
                   "fraction of the group.")
    else:
        rep.skip("ARI", "gt/cell_type missing or of another length than the model's neurons")
    if "orientation" in gt and len(gt["orientation"]) == len(groups) and R > 1:
        res = va.orientation_recovery(ro["features"], R, groups, gt["orientation"], direction=-1)
        other = va.orientation_recovery(ro["features"], R, groups, gt["orientation"], direction=+1)
        rep.numbers["orientation_mean_error_deg"] = res["mean_error_deg"]
        rep.numbers["orientation_median_error_deg"] = res["median_error_deg"]
        rep.add(f"- preferred orientation from the strongest rotation ({res['neurons']} oriented neurons): mean "
                f"error **{res['mean_error_deg']:.1f} deg**, median {res['median_error_deg']:.1f} deg (chance 45 deg; "
                f"the {360 / R:g} deg rotation steps alone give about {360 / R / 4:.1f} deg). With the opposite "
                f"rotation direction: mean {other['mean_error_deg']:.1f} deg (a check of the sign convention).", "")
        fig, ax = plt.subplots(figsize=(4, 3.2))
        sel = np.isfinite(res["predicted"])
        ax.plot(np.degrees(np.asarray(gt["orientation"])[sel]), np.degrees(res["predicted"][sel]), ".", markersize=3)
        ax.set(xlabel="true orientation (deg)", ylabel="recovered (deg)", xlim=(0, 180), ylim=(0, 180))
        rep.figure(fig, "dv1_orientation.png", "Preferred orientation from the strongest rotation against "
                   "gt/orientation.")
    elif R <= 1:
        rep.skip("orientation recovery", "the model has no rotation channels (not a rotation-equivariant core)")
    else:
        rep.skip("orientation recovery", "gt/orientation missing or of another length")


INSILICO_FILES = ("insilico.json", "mei.json", "ensemble.json")
MEI_PANELS = 12


def insilico_section(rep, folder):
    """The in-silico experiments of analysis/insilico.py, scored against the ground truth, and MEI panels."""
    loaded = {}
    for name in INSILICO_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    loaded[name] = json.load(f)
            except ValueError as e:
                rep.skip(f"`{path}`", f"not JSON ({e}); run analysis/insilico.py again with --force")
    if not loaded:
        rep.skip("in-silico experiments", f"{folder} holds none of {', '.join(INSILICO_FILES)} (analysis/insilico.py "
                 "tuning / mei / ensemble write them)")
        return
    fmt = lambda v, spec=".3g": "n/a" if v is None else format(v, spec)
    rows = []
    t = loaded.get("insilico.json")
    if t:
        oriented = f"{t['oriented_neurons']} oriented neurons (truth OSI >= 0.2) of {t['neurons']}"
        rows += [("preferred-orientation error vs the truth's tuning, median (deg)",
                  t["orientation_error_deg_vs_truth_median"], oriented),
                 ("preferred-orientation error vs gt/orientation, median (deg)", t["orientation_error_deg_vs_gt_median"],
                  f"the truth's own tuning is {fmt(t['truth_tuning_vs_gt_orientation_deg_median'])} deg off gt"),
                 ("suppression index, r(model, truth)", t["suppression_index_r"], "size tuning at the RF centre"),
                 ("preferred size, r(log model, log truth)", t["preferred_size_r"], ""),
                 ("c50, r(model, truth)", t["c50_r"], "contrast response"),
                 ("OSI, r(model, truth)", t["osi_r"], "")]
        for key in ("with_surround_modulator", "without_surround_modulator"):
            si = t.get(f"mean_si_{key}")
            if si:
                rows.append((f"mean SI of neurons {key.replace('_', ' ')}: model", si["model"],
                             f"truth {fmt(si['truth'])}, {si['neurons']} neurons"))
    m = loaded.get("mei.json")
    if m:
        rows += [("MEI true-rate ratio, median (true rate at the MEI / true max over training images)",
                  m["true_ratio_median"], f"{m['neurons']} neurons; ratio > 1 for {fmt(m['true_ratio_above_1_fraction'])}"),
                 ("MEI, the model's own ratio, median", m["model_ratio_median"], ""),
                 ("MEI ratios, r(true, model)", m["true_vs_model_ratio_r"], "")]
    e = loaded.get("ensemble.json")
    if e:
        for name, label in (("test_correlation", "test correlation"), ("ceiling_fraction", "fraction of the ceiling"),
                            ("feve", "FEVE")):
            if e.get(f"gain_{name}") is not None:
                rows.append((f"ensemble gain in {label}", e[f"gain_{name}"],
                             f"{e['members']} members: single {fmt(e[f'single_{name}'], '.4f')} -> ensemble "
                             f"{fmt(e[f'ensemble_{name}'], '.4f')}"))
    rep.add("## In-silico experiments scored against the ground truth", "",
            f"From `{folder}` (analysis/insilico.py). The same experiments on the model and on the simulated neurons "
            "(`v1sysid simulate --rates-for`).", "", "| measure | value | note |", "|---|---|---|",
            *[f"| {name} | {fmt(value)} | {note} |" for name, value, note in rows], "")
    mei_path, scores_path = os.path.join(folder, "mei.h5"), os.path.join(folder, "mei_scores.h5")
    if os.path.isfile(mei_path):
        import h5py
        with h5py.File(mei_path, "r") as f:
            images, neurons = f["images"][...][:MEI_PANELS, 0], f["neurons"][...][:MEI_PANELS]
        ratios = None
        if os.path.isfile(scores_path):
            with h5py.File(scores_path, "r") as f:
                ratios = f["true_ratio"][...][:MEI_PANELS]
        cols = min(4, len(images))
        rows_n = (len(images) + cols - 1) // cols
        fig, axes = plt.subplots(rows_n, cols, figsize=(3 * cols, 1.9 * rows_n), squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.axis("off")
            if k < len(images):
                ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
                title = f"neuron {neurons[k]}" + ("" if ratios is None else f", true ratio {ratios[k]:.2f}")
                ax.set_title(title, fontsize=8)
        rep.figure(fig, "mei.png", "Most exciting inputs of the model (grey levels 0-255) and the true neuron's "
                   "rate at its MEI over its true maximum among the training images")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results")
    p.add_argument("--checkpoint")
    p.add_argument("--control")
    p.add_argument("--checkpoint-dir")
    p.add_argument("--rf")
    p.add_argument("--data")
    p.add_argument("--exe")
    p.add_argument("--data-key", help="readout of a checkpoint trained on several datasets (its data key)")
    p.add_argument("--insilico", help="output folder of analysis/insilico.py (tuning, mei, ensemble)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not os.path.isfile(args.results):
        p.error(f"{args.results}: no such results file (run v1sysid sweep first)")
    exe = find_executable(args.exe)
    results = va.read_results(args.results)
    rep = Report(args.out)
    attrs = results["attrs"]
    rep.add("# v1sysid sweep report", "", f"- results: `{args.results}`",
            f"- dataset: `{attrs.get('dataset_path', '?')}`", f"- trials: {len(results['architecture'])} "
            f"({int(np.sum(results['status'] == 'ok'))} ok)", "")
    if args.data is None and attrs.get("dataset_path", "").endswith(".h5") and os.path.isfile(attrs["dataset_path"]):
        args.data = attrs["dataset_path"]
    rows = table1(rep, results)
    if args.data and os.path.isfile(args.data):
        results_data = attrs.get("dataset_path", "")
        digital_v1_room(rep, args.data, rows,
                        os.path.isfile(results_data) and os.path.samefile(results_data, args.data))
    fig2(rep, results)
    fig3(rep, results)
    lurz(rep, results)

    trial = None  # the results row of the analysed checkpoint, when known
    checkpoint, control = args.checkpoint, args.control
    by_trial = checkpoints_by_trial(args.checkpoint_dir or os.path.join(os.path.dirname(args.results), "checkpoints"))
    ids = trial_ids(results)

    def verified(path, row):
        """path when it is the checkpoint of results row `row`, else None (and the report says why)."""
        why = checkpoint_mismatch(path, results, row)
        if why is None:
            return path
        print(f"report: not using {path}: {why}", file=sys.stderr)
        rep.skip(f"checkpoint `{path}`", why)
        return None

    if checkpoint is None and by_trial:
        candidates = [r for r in rows if r["best_trial"] >= 0 and ids[r["best_trial"]] in by_trial]
        # Across groups by the criterion each group was ranked by (select_table): the validation correlation,
        # highest first, when every candidate was trained on Lurz's schedule, else the validation loss.
        by_correlation = bool(candidates) and all(r["ranked_by"] == "validation correlation" for r in candidates)
        ranked = sorted(candidates, key=lambda r: (-r["data_fraction"], -r["best_val_correlation"] if by_correlation
                                                   else r["best_val_loss"]))
        plain = [r for r in ranked if not re.search(r"l2|dense|positive", r["architecture"], re.I)]
        if plain:
            row = plain[0]["best_trial"]
            checkpoint = verified(by_trial[ids[row]], row)
            trial = row if checkpoint else None
        if control is None:
            ctl = [r for r in ranked if re.search(r"l2|dense", r["architecture"], re.I)]
            if ctl:
                control = verified(by_trial[ids[ctl[0]["best_trial"]]], ctl[0]["best_trial"])
    elif checkpoint is not None:
        tid = next((t for t, path in by_trial.items() if os.path.samefile(path, checkpoint)), None)
        if tid is not None and tid in ids and verified(checkpoint, ids.index(tid)):
            trial = ids.index(tid)
    if checkpoint is None:
        rep.skip("Figs. 4-6 and the digital-V1 checks", "no checkpoint: pass --checkpoint (or run the sweep with "
                 "--save-checkpoints DIR and pass --checkpoint-dir DIR)")
    else:
        try:
            checkpoint_figures(rep, results, checkpoint, control, trial, args, exe)
        except ValueError as e:  # e.g. a multi-dataset checkpoint without --data-key: say why, keep the rest
            print(f"report: Figs. 4-6 skipped: {e}", file=sys.stderr)
            rep.skip("Figs. 4-6 and the digital-V1 checks", str(e))
    if args.insilico:
        insilico_section(rep, args.insilico)
    if rep.numbers:
        rep.add("## Numbers", "", *[f"- {k}: {v:.4g}" for k, v in rep.numbers.items()], "")
    rep.write()
    print(f"wrote {os.path.join(args.out, 'report.md')}")
    return rep


if __name__ == "__main__":
    try:
        main()
    except OutputError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
