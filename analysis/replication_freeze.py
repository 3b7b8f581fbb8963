#!/usr/bin/python3
"""Freezes the development phase of the replication (docs/replication/protocol.md, section 4.1).

    /usr/bin/python3 analysis/replication_freeze.py DEV_RESULTS.h5 [--sweeps-dir sweeps/replication] [--force]

Reads the development sweep's results file (`v1sysid sweep sweeps/replication/dev.yaml`), picks for each
architecture the draw with the lowest validation loss among its finished (`ok`) trials, and writes the test-phase
sweeps with those values fixed:
  test.yaml      the three architectures at 12.5 %, 25 % and 100 % of the training data (Table 1, Fig. 3)
  test_25.yaml   the same at 25 % only (the deep_fraction 0 and absolute-coupling populations)
Each architecture keeps its model file and overrides of dev.yaml (the Gaussian readout, the cap, cnn_8's
channels), plus the frozen hyperparameters; one draw per cell. It also prints the amendment for the protocol
(a dated section with the values, to append to protocol.md by hand before any test-seed run).

The rule is mechanical, so nobody picks settings by eye: every architecture of dev.yaml must have all its draws
finished (a failed or diverged draw counts, as the sweep recorded it; a pending one refuses the freeze).
Exit status: 0; 2 the development phase is not finished; 3 a file cannot be read or written, or exists (--force
replaces it); 4 a field is missing or malformed.
"""
import argparse
import datetime
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import v1analysis  # noqa: E402
from report import OutputError, write_atomically  # noqa: E402

# The development sweep's architectures, as dev.yaml writes them (model file relative to sweeps/replication/, the
# overrides as YAML flow mappings). A test checks that this table and dev.yaml agree, so an edit of one without
# the other fails CI instead of freezing the wrong models.
READOUT = "{kind: gaussian, regularizer: l1_features, weight: 0, feature_weight: %s, grid_predictor: cortex}"
ARCHITECTURES = {
    "roteq_4x8": {"model": "../models/roteq_demo_4x8.yaml", "core": {}},
    "cnn_32": {"model": "../models/cnn_demo_32.yaml", "core": {}},
    "cnn_8": {"model": "../models/cnn_demo_32.yaml", "core": {"channels": "[8, 8, 8]"}},
}
FROZEN_KEYS = ("core.smooth_weight", "core.sparse_weight", "readout.feature_weight")
MAX_ITERATIONS = 8000
SWEEPS = {"test": [0.125, 0.25, 1.0], "test_25": [0.25]}


class FreezeError(Exception):
    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def choose(results_path):
    """{architecture: (trial id, best validation loss, {key: value})} by the lowest validation loss."""
    try:
        r = v1analysis.read_results(results_path)
    except (OSError, KeyError) as e:
        raise FreezeError(f"{results_path}: cannot read the results file ({e}); pass the development sweep's --out",
                          3)
    for key in FROZEN_KEYS:
        if key not in r["hyperparameters"]:
            raise FreezeError(f"{results_path}: trials/hyperparameters/{key}: missing; this is not a results file "
                              "of sweeps/replication/dev.yaml", 4)
    status = np.asarray(r["status"]).astype(str)
    arch = np.asarray(r["architecture"]).astype(str)
    if set(arch) != set(ARCHITECTURES):
        raise FreezeError(f"{results_path}: trials/architecture: {sorted(set(arch))}, expected "
                          f"{sorted(ARCHITECTURES)} (sweeps/replication/dev.yaml)", 4)
    pending = [int(i) for i in np.flatnonzero(~np.isin(status, list(v1analysis.FINISHED_STATUSES)))]
    if pending:
        raise FreezeError(f"{results_path}: trials {pending} are not finished (status "
                          f"{sorted(set(status[pending]))}); finish the development phase first "
                          "(analysis/replication_runs.sh dev --out DIR resumes it)", 2)
    loss = np.asarray(r["best_val_loss"], dtype=float)
    chosen = {}
    for name in ARCHITECTURES:
        rows = np.flatnonzero((arch == name) & (status == "ok") & np.isfinite(loss))
        if rows.size == 0:
            raise FreezeError(f"{results_path}: architecture {name}: no draw finished with status ok; the "
                              "protocol has no rule for this, so it needs a dated amendment", 2)
        best = int(rows[np.argmin(loss[rows])])  # argmin takes the first of equal losses: the lower draw
        chosen[name] = (best, float(loss[best]), {k: float(r["hyperparameters"][k][best]) for k in FROZEN_KEYS})
    return chosen


def sweep_text(name, fractions, chosen, dev_results):
    lines = [f"# Test phase of the replication protocol (docs/replication/protocol.md, sections 4.2-4.3), written by",
             f"# analysis/replication_freeze.py from {os.path.basename(dev_results)}: each architecture with the",
             "# development draw of the lowest validation loss, frozen. Do not edit by hand.",
             f"name: replication_{name}",
             "seed: 1818",
             "architectures:"]
    for arch, (trial, loss, values) in chosen.items():
        spec = ARCHITECTURES[arch]
        core = dict(spec["core"])
        core["smooth_weight"] = repr(values["core.smooth_weight"])
        core["sparse_weight"] = repr(values["core.sparse_weight"])
        core_text = ", ".join(f"{k}: {v}" for k, v in core.items())
        lines += [f"  - name: {arch}   # development trial {trial}, validation loss {loss:.4f}",
                  f"    model: {spec['model']}",
                  "    overrides:",
                  f"      core: {{{core_text}}}",
                  "      readout: " + READOUT % repr(values["readout.feature_weight"]),
                  f"      train: {{max_iterations: {MAX_ITERATIONS}}}"]
    lines += ["search:", "  draws: 1", "grid:", f"  data_fraction: [{', '.join(repr(f) for f in fractions)}]", ""]
    return "\n".join(lines)


def amendment_text(chosen, dev_results):
    today = datetime.date.today().isoformat()
    rows = [f"## Amendment {today}: the frozen settings (section 4.1)", "",
            f"Chosen by `analysis/replication_freeze.py {os.path.basename(dev_results)}` (lowest validation loss of "
            "each architecture's 4 development draws), written into sweeps/replication/test.yaml and test_25.yaml "
            "before any test-seed run:", "",
            "| architecture | development trial | validation loss | core.smooth_weight | core.sparse_weight | "
            "readout.feature_weight |", "|---|---:|---:|---:|---:|---:|"]
    for arch, (trial, loss, v) in chosen.items():
        rows.append(f"| {arch} | {trial} | {loss:.4f} | {v['core.smooth_weight']:.6g} | "
                    f"{v['core.sparse_weight']:.6g} | {v['readout.feature_weight']:.6g} |")
    return "\n".join(rows) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dev_results")
    p.add_argument("--sweeps-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sweeps",
                                                         "replication"))
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    try:
        chosen = choose(args.dev_results)
        outputs = {os.path.join(args.sweeps_dir, f"{name}.yaml"): sweep_text(name, fractions, chosen,
                                                                             args.dev_results)
                   for name, fractions in SWEEPS.items()}
        for path in outputs:
            if os.path.exists(path) and not args.force:
                raise FreezeError(f"{path}: exists; the settings are frozen already (pass --force to write them "
                                  "again, which a dated amendment must then explain)", 3)
        for path, body in outputs.items():
            try:
                write_atomically(path, lambda f, body=body: f.write(body))
            except OutputError as e:
                raise FreezeError(str(e), 3)
            print(f"replication_freeze.py: wrote {path}")
    except FreezeError as e:
        print(f"replication_freeze.py: error: {e}", file=sys.stderr)
        return e.exit_code
    print()
    print(amendment_text(chosen, args.dev_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
