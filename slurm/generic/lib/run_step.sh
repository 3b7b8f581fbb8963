# shellcheck shell=bash
# Sourced by the sbatch scripts of slurm/generic: runs the sweep's job step, passes a stop signal on to it and
# requeues the job when the sweep stopped before every trial finished. slurm/README.md describes the flow.
#
#   run_sweep_step srun ... v1sysid sweep ...
#
# `--signal=B:TERM@120` signals the batch shell alone, and a shell that waits for a child runs no trap until
# `wait` returns, so the step is started in the background and waited for. The signal is passed on with
# `scancel --signal=TERM <job>`, which signals the job's steps (not the batch shell): srun itself turns a
# SIGTERM it receives into SIGKILL for its tasks ("forcing job termination"), which would drop the trials
# in flight instead of letting the ranks close the results file.
#
# Exit status of `v1sysid sweep` (src/core/error.hpp) and what the job does with it:
#   0    every trial finished                       -> exit 0 (requeued only after a stop signal, see below)
#   75   stopped by SIGTERM/SIGINT, a rerun resumes  -> requeue, at most V1SYSID_MAX_REQUEUES times
#   7    environmental (disk full, I/O, lost rank)  -> requeue, at most V1SYSID_MAX_ENV_REQUEUES times
#   else a final error (2 config, 3 I/O, 4 data...) -> the job fails with that status, no requeue
# Both limits count SLURM_RESTART_COUNT, the number of times SLURM has requeued this job for any reason.

V1SYSID_MAX_REQUEUES=${V1SYSID_MAX_REQUEUES:-50}
V1SYSID_MAX_ENV_REQUEUES=${V1SYSID_MAX_ENV_REQUEUES:-3}

_slurm_say() { echo "v1sysid-slurm: $*" >&2; }

_step_pid=
_step_running=0
_stop_signals=0

# A stop signal reached the batch shell: pass SIGTERM on to the step once (SLURM may signal again at the
# time limit; v1sysid is already winding down then).
_on_stop_signal() {
  _stop_signals=$((_stop_signals + 1))
  _slurm_say "received SIG$1 (job ${SLURM_JOB_ID})"
  [ "$_step_running" = 1 ] && [ "$_stop_signals" = 1 ] || return 0
  if command -v scancel >/dev/null 2>&1 && scancel --signal=TERM "$SLURM_JOB_ID"; then
    _slurm_say "passed SIGTERM on to the job step; waiting for the ranks to close the results file"
  else
    # Without scancel only srun can be reached; it kills the ranks (SIGKILL), which loses the trials in
    # flight but nothing that finished: the results file survives a kill at any moment.
    _slurm_say "scancel failed; sending SIGTERM to srun (pid $_step_pid), which kills the ranks"
    kill -TERM "$_step_pid" 2>/dev/null || true
  fi
}

# _requeue <limit> <status> [<what to fix first>]: requeues this job unless it has been requeued <limit> times;
# exits 0 when the requeue was accepted, otherwise <status>.
_requeue() {
  local limit=$1 status=$2 fix=${3:-} count=${SLURM_RESTART_COUNT:-0}
  if [ "$count" -ge "$limit" ]; then
    _slurm_say "not requeued: job $SLURM_JOB_ID was requeued $count times already (limit $limit);" \
      "${fix:+$fix, then }submit the same command again to resume the sweep"
    exit "$status"
  fi
  if scontrol requeue "$SLURM_JOB_ID"; then
    _slurm_say "requeued job $SLURM_JOB_ID (requeue $((count + 1)) of at most $limit); it resumes the sweep"
    exit 0
  fi
  _slurm_say "scontrol requeue $SLURM_JOB_ID failed (was the job cancelled?); submit the same command" \
    "again to resume the sweep"
  exit "$status"
}

# run_sweep_step <command...>: runs the command (the srun line) and exits with the job's outcome.
run_sweep_step() {
  trap '_on_stop_signal TERM' TERM
  trap '_on_stop_signal INT' INT
  trap '_on_stop_signal USR1' USR1
  if [ "$_stop_signals" -gt 0 ]; then
    _slurm_say "stopped before the sweep started"
    _requeue "$V1SYSID_MAX_REQUEUES" 75
  fi
  _step_running=1  # before the fork: a signal that comes before `$!` is read is still passed on (by scancel)
  "$@" &
  _step_pid=$!
  local status='' seen s
  while :; do
    seen=$_stop_signals
    s=0
    wait "$_step_pid" 2>/dev/null || s=$?
    # 127: the step was already reported by the previous wait (a signal came just after it returned).
    if [ "$s" = 127 ] && [ -n "$status" ]; then break; fi
    status=$s
    # A trapped signal ends `wait` early (status 128 + signal) while the step runs on: wait again.
    [ "$_stop_signals" != "$seen" ] || break
  done
  _step_running=0
  case "$status" in
    75)
      _slurm_say "the sweep stopped before every trial finished (exit 75)"
      _requeue "$V1SYSID_MAX_REQUEUES" 75 ;;
    7)
      _slurm_say "the sweep failed for an environmental reason (exit 7: disk full, I/O error, lost rank)"
      _requeue "$V1SYSID_MAX_ENV_REQUEUES" 7 "free space or fix the cause named above" ;;
  esac
  if [ "$_stop_signals" -gt 0 ] && { [ "$status" = 0 ] || [ "$status" -gt 128 ]; }; then
    # A v1sysid older than exit status 75 exits 0 when stopped, and a step killed by a signal may have
    # stopped anywhere: requeue, and a sweep that had in fact finished finds nothing to run.
    _slurm_say "the step ended with exit $status after a stop signal"
    _requeue "$V1SYSID_MAX_REQUEUES" 75
  fi
  [ "$status" = 0 ] || _slurm_say "the sweep failed (exit $status; see its error above); not requeued"
  exit "$status"
}
