"""The sbatch scripts of slurm/generic with stub srun, scancel, scontrol and v1sysid on PATH: a stop signal sent to
the batch shell reaches the job step as SIGTERM, the script waits for the step and requeues the job; a sweep that
stopped by itself (exit 75) or met an environmental failure (exit 7) is requeued within its limit; a finished
sweep and a final error are not. No SLURM and no build are needed: each case takes a fraction of a second.
"""
import os
import signal
import stat
import subprocess
import tempfile
import time
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPTS = ("sweep_cpu.sbatch", "sweep_gpu.sbatch", "sweep_array.sbatch")
JOB_ID = "4242"

# Behaves like srun: runs the task, and turns a SIGTERM it receives into SIGKILL for the task ("forcing job
# termination"), so a script that signals srun instead of the step is caught by the task's missing cleanup.
STUB_SRUN = r"""#!/bin/bash
echo "$*" >> "$STUB_DIR/srun.log"
while [ "${1#-}" != "$1" ]; do shift; done
"$@" &
task=$!
echo "$task" > "$STUB_DIR/step.pid.tmp" && mv "$STUB_DIR/step.pid.tmp" "$STUB_DIR/step.pid"
trap 'echo TERM >> "$STUB_DIR/srun.log"; kill -KILL $task' TERM
s=0; wait $task || s=$?
if [ "$s" -gt 128 ] && kill -0 $task 2>/dev/null; then s=0; wait $task || s=$?; fi
exit $s
"""

# Like slurmctld: `scancel --signal=TERM <job>` signals the job's step (not the batch shell).
STUB_SCANCEL = r"""#!/bin/bash
echo "$*" >> "$STUB_DIR/scancel.log"
[ "$1" = "--signal=TERM" ] && kill -TERM "$(cat "$STUB_DIR/step.pid")"
"""

STUB_SCONTROL = r"""#!/bin/bash
echo "$*" >> "$STUB_DIR/scontrol.log"
echo scontrol >> "$STUB_DIR/events.log"
exit "${STUB_SCONTROL_STATUS:-0}"
"""

# v1sysid: STUB_SWEEP=exit:N exits N at once; STUB_SWEEP=run:N waits for SIGTERM, then exits N (75: a stopped
# sweep; 0: a v1sysid from before exit status 75).
STUB_V1SYSID = r"""#!/bin/bash
echo "$*" >> "$STUB_DIR/v1sysid.log"
case "$STUB_SWEEP" in
  exit:*) exit "${STUB_SWEEP#exit:}" ;;
  run:*)
    # Closing the results file takes a moment: a script that does not wait for the step requeues too early.
    trap 'sleep 0.3; echo "stopped by TERM" >> "$STUB_DIR/v1sysid.log"; echo step-exit >> "$STUB_DIR/events.log"
          exit "${STUB_SWEEP#run:}"' TERM
    touch "$STUB_DIR/running"
    for i in $(seq 200); do sleep 0.05; done
    echo "never stopped" >> "$STUB_DIR/v1sysid.log"; exit 0 ;;
esac
"""


def write_executable(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class SbatchScriptsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.bin = os.path.join(self.dir, "bin")
        os.mkdir(self.bin)
        for name, text in (("srun", STUB_SRUN), ("scancel", STUB_SCANCEL), ("scontrol", STUB_SCONTROL),
                           ("v1sysid", STUB_V1SYSID)):
            write_executable(os.path.join(self.bin, name), text)
        with open(os.path.join(self.dir, "tasks.txt"), "w") as f:
            f.write("sweeps/a.yaml\n")
        self.processes = []

    def tearDown(self):
        for p in self.processes:  # a failing case may leave the stub step running
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.tmp.cleanup()

    def start(self, script, sweep, restart_count=None, scontrol_status=0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(PATH=self.bin + os.pathsep + env.get("PATH", "/usr/bin:/bin"), STUB_DIR=self.dir,
                   STUB_SWEEP=sweep, STUB_SCONTROL_STATUS=str(scontrol_status), SLURM_JOB_ID=JOB_ID,
                   V1SYSID=os.path.join(self.bin, "v1sysid"), V1SYSID_PROFILE=os.path.join(self.dir, "none"))
        if restart_count is not None:
            env["SLURM_RESTART_COUNT"] = str(restart_count)
        if script == "sweep_array.sbatch":
            env["SLURM_ARRAY_TASK_ID"] = "1"
            args = [os.path.join(self.dir, "tasks.txt"), "dv1.h5", os.path.join(self.dir, "out")]
        else:
            args = ["sweeps/a.yaml", "dv1.h5", os.path.join(self.dir, "res.h5")]
        p = subprocess.Popen(["bash", os.path.join(REPO, "slurm", "generic", script), *args], env=env,
                             cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.processes.append(p)
        return p

    def finish(self, p):
        out, _ = p.communicate(timeout=30)
        return p.returncode, out

    def clear_logs(self):
        for name in ("v1sysid.log", "scancel.log", "scontrol.log", "srun.log", "events.log", "running", "step.pid"):
            if os.path.exists(os.path.join(self.dir, name)):
                os.remove(os.path.join(self.dir, name))

    def log(self, name):
        path = os.path.join(self.dir, name + ".log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().splitlines()

    def run_script(self, script, sweep, **kwargs):
        return self.finish(self.start(script, sweep, **kwargs))

    def test_a_finished_sweep_exits_0_without_requeue(self):
        for script in SCRIPTS:
            with self.subTest(script=script):
                self.clear_logs()
                rc, out = self.run_script(script, "exit:0")
                self.assertEqual(rc, 0, out)
                self.assertEqual(self.log("scontrol"), [], out)
                self.assertEqual(len(self.log("v1sysid")), 1, out)
                self.assertIn("sweep sweeps/a.yaml --data dv1.h5 --out", self.log("v1sysid")[0])

    def start_and_signal(self, script, sweep, signals=(signal.SIGTERM,)):
        self.clear_logs()
        p = self.start(script, sweep)
        deadline = time.monotonic() + 20
        while not all(os.path.exists(os.path.join(self.dir, f)) for f in ("running", "step.pid")):
            self.assertIsNone(p.poll(), "the script ended before the step started")
            self.assertLess(time.monotonic(), deadline, "the step never started")
            time.sleep(0.02)
        for s in signals:
            p.send_signal(s)
        return self.finish(p)

    def test_b_term_to_the_batch_shell_reaches_the_step_then_requeues(self):
        for script in SCRIPTS:
            with self.subTest(script=script):
                rc, out = self.start_and_signal(script, "run:75")  # --signal=B:TERM@120: the batch shell alone
                self.assertIn("stopped by TERM", self.log("v1sysid"), out)  # the step's own cleanup ran
                self.assertNotIn("TERM", self.log("srun"), out)  # srun would kill the ranks
                self.assertEqual(self.log("scancel"), ["--signal=TERM " + JOB_ID], out)
                self.assertEqual(self.log("scontrol"), ["requeue " + JOB_ID], out)
                self.assertEqual(self.log("events"), ["step-exit", "scontrol"], out)  # waited for the step
                self.assertEqual(rc, 0, out)  # requeued: not a failure

    def test_b_signals_repeated_or_an_old_v1sysid_that_exits_0_when_stopped(self):
        # SLURM signals again at the time limit; USR1 and INT stop the sweep too. Forwarded once.
        rc, out = self.start_and_signal("sweep_cpu.sbatch", "run:75", (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT))
        self.assertEqual((rc, self.log("scancel"), self.log("scontrol")),
                         (0, ["--signal=TERM " + JOB_ID], ["requeue " + JOB_ID]), out)
        rc, out = self.start_and_signal("sweep_cpu.sbatch", "run:0")
        self.assertIn("stopped by TERM", self.log("v1sysid"), out)
        self.assertEqual((rc, self.log("scontrol")), (0, ["requeue " + JOB_ID]), out)

    def test_c_a_stopped_sweep_requeues_itself(self):
        for script in SCRIPTS:
            with self.subTest(script=script):
                self.clear_logs()
                rc, out = self.run_script(script, "exit:75", restart_count=2)
                self.assertEqual(self.log("scontrol"), ["requeue " + JOB_ID], out)
                self.assertEqual(rc, 0, out)

    def test_d_a_final_error_is_passed_through_without_requeue(self):
        for script in SCRIPTS:
            for status in (2, 3, 4, 1):
                with self.subTest(script=script, status=status):
                    rc, out = self.run_script(script, f"exit:{status}")
                    self.assertEqual(rc, status, out)
                    self.assertEqual(self.log("scontrol"), [], out)

    def test_e_environmental_failure_requeues_up_to_its_limit(self):
        rc, out = self.run_script("sweep_cpu.sbatch", "exit:7", restart_count=0)
        self.assertEqual((rc, self.log("scontrol")), (0, ["requeue " + JOB_ID]), out)
        self.clear_logs()
        rc, out = self.run_script("sweep_cpu.sbatch", "exit:7", restart_count=3)  # V1SYSID_MAX_ENV_REQUEUES
        self.assertEqual((rc, self.log("scontrol")), (7, []), out)
        self.assertIn("requeued 3 times already", out)

    def test_requeue_limit_and_refused_requeue_end_with_the_stop_status(self):
        rc, out = self.run_script("sweep_cpu.sbatch", "exit:75", restart_count=50)  # V1SYSID_MAX_REQUEUES
        self.assertEqual((rc, self.log("scontrol")), (75, []), out)
        self.assertIn("submit the same command again", out)
        self.clear_logs()
        rc, out = self.run_script("sweep_gpu.sbatch", "exit:75", scontrol_status=1)  # e.g. the job was cancelled
        self.assertEqual((rc, self.log("scontrol")), (75, ["requeue " + JOB_ID]), out)
        self.assertIn("scontrol requeue " + JOB_ID + " failed", out)

    def test_outside_slurm_the_scripts_refuse(self):
        for script in SCRIPTS:
            with self.subTest(script=script):
                env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
                r = subprocess.run(["bash", os.path.join(REPO, "slurm", "generic", script)], env=env,
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 1)
                self.assertIn("sbatch", r.stderr)


if __name__ == "__main__":
    unittest.main()
