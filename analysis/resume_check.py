#!/usr/bin/env python3
"""Preemption check of mid-trial resume (issue 21): a sweep stopped by SIGTERM at random moments and rerun each
time must end with the rows of an uninterrupted sweep, bit for bit, and lose little training time per stop.

    analysis/resume_check.py --v1sysid build/ci/v1sysid --work /tmp/resume_check [--ranks 2] [--stops 10]

Builds data/tiny.yaml data on procedural stimuli in WORK, runs sweeps/tiny.yaml once without interruption
(WORK/whole.h5), then into WORK/stopped.h5: start, SIGTERM after a random delay (seeded), rerun, ... --stops
times, then once more to the end. It prints, and writes to WORK/resume_check.json:
  - whether every trial field but timing and placement (wall_seconds, heartbeat, rank, host, row_checksum) is
    bit-identical;
  - the wall time of the uninterrupted sweep, the summed wall time of all the interrupted runs, and the overhead
    per stop (restart, data loading and the training lost since the last saved state, together), to compare with
    the state interval (--save-state-every, 10 minutes by default).
Run it on an idle machine: the overhead is a difference of wall times.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_FIELDS = {"wall_seconds", "rank", "host", "row_checksum", "heartbeat"}


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def sweep_command(args, out):
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(args.ranks), args.v1sysid, "sweep",
            os.path.join(ROOT, "sweeps/tiny.yaml"), "--data", os.path.join(args.work, "tiny.h5"), "--out", out]


def timed_run(cmd, log, stop_after=None):
    """Runs cmd; with stop_after, sends SIGTERM after that many seconds. Returns (exit code, wall seconds)."""
    start = time.monotonic()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=stop_after)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)  # mpirun forwards it to the ranks
            p.wait()
    return p.returncode, time.monotonic() - start


def trial_fields(path):
    with h5py.File(path, "r") as f:
        out = {}
        f["trials"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return {k: v for k, v in out.items() if k not in TIMING_FIELDS}


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fc":
        return a.shape == b.shape and a.tobytes() == b.tobytes()
    return a.shape == b.shape and bool(np.all(a == b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--v1sysid", default=os.path.join(ROOT, "build/ci/v1sysid"))
    ap.add_argument("--work", required=True, help="scratch folder (created)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--stops", type=int, default=10)
    ap.add_argument("--seed", type=int, default=21, help="seed of the random stop moments")
    ap.add_argument("--min-delay", type=float, default=2.0, help="seconds after a start before the earliest stop")
    ap.add_argument("--max-delay", type=float, default=8.0)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    stimuli, data = os.path.join(args.work, "stimuli.h5"), os.path.join(args.work, "tiny.h5")
    if not os.path.exists(data):
        run([args.v1sysid, "images", "--procedural", "dead_leaves", "--count", "700", "--test-count", "20", "--out", stimuli])
        run([args.v1sysid, "simulate", os.path.join(ROOT, "data/tiny.yaml"), "--stimuli", stimuli, "--out", data])
    whole, stopped = os.path.join(args.work, "whole.h5"), os.path.join(args.work, "stopped.h5")
    for path in (whole, stopped):
        if os.path.exists(path):
            os.remove(path)  # --force would do; removing keeps the two runs' command lines identical
    code, whole_seconds = timed_run(sweep_command(args, whole), os.path.join(args.work, "whole.log"))
    if code != 0:
        sys.exit(f"the uninterrupted sweep failed (exit {code}); see {args.work}/whole.log")
    print(f"uninterrupted: {whole_seconds:.1f} s", flush=True)

    rng = random.Random(args.seed)
    runs, stops, resumed = [], 0, 0
    for k in range(args.stops):
        delay = rng.uniform(args.min_delay, args.max_delay)
        log = os.path.join(args.work, f"stopped_{k}.log")
        code, seconds = timed_run(sweep_command(args, stopped), log, stop_after=delay)
        text = open(log).read()
        resumed += text.count("resuming at step")
        runs.append({"delay": delay, "exit": code, "seconds": seconds})
        print(f"run {k}: SIGTERM after {delay:.1f} s -> exit {code} in {seconds:.1f} s", flush=True)
        if code == 0:
            break
        stops += 1
    code, seconds = timed_run(sweep_command(args, stopped), os.path.join(args.work, "final.log"))
    resumed += open(os.path.join(args.work, "final.log")).read().count("resuming at step")
    runs.append({"delay": None, "exit": code, "seconds": seconds})
    if code != 0:
        sys.exit(f"the final rerun failed (exit {code}); see {args.work}/final.log")

    a, b = trial_fields(whole), trial_fields(stopped)
    differing = sorted(k for k in a if k not in b or not same_bits(a[k], b[k]))
    total = sum(r["seconds"] for r in runs)
    overhead = (total - whole_seconds) / max(stops, 1)
    report = {"ranks": args.ranks, "stops": stops, "states_resumed": resumed, "identical": not differing,
              "differing_fields": differing, "uninterrupted_seconds": whole_seconds, "interrupted_total_seconds": total,
              "overhead_seconds_per_stop": overhead, "state_interval_seconds": 600, "runs": runs}
    with open(os.path.join(args.work, "resume_check.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"{stops} stops, {resumed} trial states resumed; rows identical: {not differing}"
          + (f" (differ: {', '.join(differing)})" if differing else ""))
    print(f"wall time: uninterrupted {whole_seconds:.1f} s, interrupted runs together {total:.1f} s: "
          f"{overhead:.1f} s per stop (restart, loading and lost steps), against a state interval of 600 s")
    sys.exit(0 if not differing and stops > 0 else 1)


if __name__ == "__main__":
    main()
