"""env/demo.sh counts a step as done only when its output is complete: a results file with unfinished trials is
resumed (the sweep runs again), a 0-byte output never counts, and the report is made again when results.h5 is
newer than report.md or report.md is empty. The script's functions are called with a stub v1sysid and a stub
Python, so nothing is built or trained.
"""
import os
import stat
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

DEMO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "env", "demo.sh"))

# Lists `sweep` among its subcommands (demo.sh asks --help) and records every other call.
STUB_EXE = r"""#!/bin/bash
if [ "$1" = --help ]; then printf 'v1sysid\n\nSubcommands:\n  sweep    model search\n'; exit 0; fi
echo "$*" >> "$STUB_DIR/calls.log"
"""


def write_executable(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def write_results(path, statuses):
    with h5py.File(path, "w") as f:
        f.create_dataset("trials/status", data=np.array(statuses, dtype="S16"))


class DemoStepsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "demo")
        os.makedirs(os.path.join(self.out, "sweep"))
        self.results = os.path.join(self.out, "sweep", "results.h5")
        self.report = os.path.join(self.out, "report", "report.md")
        self.exe = os.path.join(self.tmp.name, "v1sysid")
        write_executable(self.exe, STUB_EXE)
        # Records the report command; the real interpreter still answers demo.sh's own h5py check.
        self.python = os.path.join(self.tmp.name, "python")
        write_executable(self.python, '#!/bin/bash\nif [ "$1" = - ]; then exec /usr/bin/python3 "$@"; fi\n'
                                      'echo "python $*" >> "$STUB_DIR/calls.log"\n')
        with open(os.path.join(self.out, "digital_v1.h5"), "w") as f:
            f.write("dataset")

    def tearDown(self):
        self.tmp.cleanup()

    def bash(self, commands, force=0):
        """Runs commands after sourcing demo.sh with the globals that setup() would set. The --help argument
        makes a demo.sh that cannot be sourced (one that runs its steps when sourced) print its help and stop
        instead of building."""
        script = f'''source "$DEMO" --help
repo=$(cd "$(dirname "$DEMO")/.." && pwd); out="$OUT"; exe="$EXE"; python="$PY"; force={force}
ranks=1; mpirun_cmd=(); force_flag=()
{commands}'''
        env = dict(os.environ, DEMO=DEMO, OUT=self.out, EXE=self.exe, PY=self.python, STUB_DIR=self.tmp.name)
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)

    def status(self, check, *paths):
        r = self.bash(f"{check} {' '.join(paths)} && echo DONE || echo NOT-DONE")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout.strip().splitlines()[-1]

    def calls(self):
        path = os.path.join(self.tmp.name, "calls.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            lines = f.read().splitlines()
        os.remove(path)
        return lines

    def test_sweep_is_done_only_when_every_trial_has_a_final_status(self):
        self.assertEqual(self.status("sweep_done", self.results), "NOT-DONE")  # missing
        open(self.results, "w").close()
        self.assertEqual(self.status("sweep_done", self.results), "NOT-DONE")  # 0 bytes
        with open(self.results, "w") as f:
            f.write("not HDF5")
        self.assertEqual(self.status("sweep_done", self.results), "NOT-DONE")  # unreadable
        for statuses, expected in ((["ok", "pending", "ok"], "NOT-DONE"), (["ok", "retry"], "NOT-DONE"),
                                   (["ok", "diverged", "failed"], "DONE")):
            write_results(self.results, statuses)
            self.assertEqual(self.status("sweep_done", self.results), expected, statuses)

    def test_an_empty_output_is_not_done_and_is_replaced(self):
        stimuli = os.path.join(self.out, "stimuli.h5")
        open(stimuli, "w").close()
        self.assertEqual(self.status("file_done", stimuli), "NOT-DONE")
        r = self.bash(f'run_step "images" "{stimuli}" file_done -- "$EXE" images --out "{stimuli}"')
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.calls(), [f"images --out {stimuli}"])
        self.assertFalse(os.path.exists(stimuli), "the empty file is removed so that the command can write it")
        with open(stimuli, "w") as f:
            f.write("images")
        self.assertEqual(self.status("file_done", stimuli), "DONE")

    def test_an_unfinished_sweep_is_resumed_and_a_finished_one_skipped(self):
        write_results(self.results, ["ok", "pending"])
        r = self.bash("step_sweep")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        calls = self.calls()
        self.assertEqual(len(calls), 1, r.stdout)
        self.assertTrue(calls[0].startswith("sweep ") and f"--out {self.results}" in calls[0], calls)
        self.assertNotIn("--force", calls[0])  # resume, never start over
        write_results(self.results, ["ok", "ok"])
        r = self.bash("step_sweep")
        self.assertEqual((r.returncode, self.calls()), (0, []), r.stdout + r.stderr)
        self.assertIn("complete, skipped", r.stdout)

    def test_a_stopped_step_says_how_to_resume_and_keeps_its_exit_status(self):
        write_executable(self.exe, STUB_EXE + 'if [ "$1" = sweep ]; then exit 75; fi\n')
        write_results(self.results, ["ok", "pending"])
        r = self.bash("step_sweep; echo AFTER")
        self.assertEqual(r.returncode, 75, r.stdout + r.stderr)
        self.assertIn("exit status 75", r.stderr)
        self.assertIn("run env/demo.sh again", r.stderr)
        self.assertNotIn("AFTER", r.stdout)  # the steps after it do not run on a partial result
        self.assertNotIn("done in", r.stdout)

    def test_the_report_is_made_only_from_a_finished_sweep_and_again_when_the_results_change(self):
        os.makedirs(os.path.dirname(self.report))
        write_results(self.results, ["ok", "pending"])
        r = self.bash("step_report")
        self.assertEqual(r.returncode, 75, r.stdout + r.stderr)
        self.assertIn("unfinished trials", r.stderr)
        self.assertEqual(self.calls(), [])

        write_results(self.results, ["ok", "ok"])
        open(self.report, "w").close()  # an empty report.md is not done
        os.utime(self.results, (1000, 1000))
        r = self.bash("step_report")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(self.calls()), 1, r.stdout)

        with open(self.report, "w") as f:
            f.write("# report\n")
        os.utime(self.report, (2000, 2000))  # made after the results: done
        r = self.bash("step_report")
        self.assertEqual((r.returncode, self.calls()), (0, []), r.stdout + r.stderr)
        os.utime(self.results, (3000, 3000))  # the sweep changed the results since
        self.assertEqual(self.status("report_done", self.report, self.results), "NOT-DONE")
        r = self.bash("step_report")
        calls = self.calls()
        self.assertEqual(len(calls), 1, r.stdout)
        self.assertIn("analysis/report.py " + self.results, calls[0])


if __name__ == "__main__":
    unittest.main()
