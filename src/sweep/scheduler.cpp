#include "sweep/scheduler.hpp"

#include "core/collective.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/stop.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <thread>

namespace v1sysid {

namespace {

// A counter on rank 0 that every rank can fetch-and-increment without rank 0's participation.
class WorkCounter {
 public:
  explicit WorkCounter(MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Aint bytes = rank == 0 ? static_cast<MPI_Aint>(sizeof(int64_t)) : 0;
    MPI_Win_allocate(bytes, sizeof(int64_t), MPI_INFO_NULL, comm, &m_base, &m_win);
    if (rank == 0) {
      MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, m_win);
      *m_base = 0;
      MPI_Win_unlock(0, m_win);
    }
    MPI_Barrier(comm);
  }
  WorkCounter(const WorkCounter&) = delete;
  WorkCounter& operator=(const WorkCounter&) = delete;
  ~WorkCounter() { MPI_Win_free(&m_win); }
  int64_t next() { return fetch_and_add(1); }
  // Hands out nothing more, to any rank: every later next() returns more than any work list holds.
  void exhaust() { fetch_and_add(int64_t{1} << 50); }

 private:
  int64_t fetch_and_add(int64_t amount) {
    int64_t previous = 0;
    MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, m_win);
    MPI_Fetch_and_op(&amount, &previous, MPI_INT64_T, 0, 0, MPI_SUM, m_win);
    MPI_Win_unlock(0, m_win);
    return previous;
  }
  int64_t* m_base = nullptr;
  MPI_Win m_win = MPI_WIN_NULL;
};

// A barrier that sleeps while it waits. Open MPI's blocking collectives poll at full speed, so a rank that has
// run out of trials would otherwise take a whole core, for as long as the last trial runs, from the ranks still
// training on its node (measured on 2 cores: the waiting rank of a 2-rank sweep took 45-60 % of a core).
void barrier_without_polling(MPI_Comm comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(comm, &request);
  int done = 0;
  for (MPI_Test(&request, &done, MPI_STATUS_IGNORE); !done; MPI_Test(&request, &done, MPI_STATUS_IGNORE))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

std::string host_name() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

bool median_rule_prunes(const PruningConfig& rule, const std::vector<double>& curve,
                        const std::vector<const std::vector<double>*>& peers, CurveDirection direction) {
  const auto k = static_cast<int64_t>(curve.size());
  if (!rule.enabled || k < rule.min_checks) return false;
  const bool higher = direction == CurveDirection::higher_is_better;
  auto best_of = [higher](std::vector<double>::const_iterator first, std::vector<double>::const_iterator last) {
    return higher ? *std::max_element(first, last) : *std::min_element(first, last);
  };
  std::vector<double> peer_best;
  for (const auto* p : peers)
    if (static_cast<int64_t>(p->size()) >= k) peer_best.push_back(best_of(p->begin(), p->begin() + k));
  if (static_cast<int64_t>(peer_best.size()) < rule.min_trials) return false;
  std::sort(peer_best.begin(), peer_best.end());
  const size_t m = peer_best.size();
  const double median = m % 2 ? peer_best[m / 2] : 0.5 * (peer_best[m / 2 - 1] + peer_best[m / 2]);
  const double mine = best_of(curve.begin(), curve.end());
  return higher ? mine < median : mine > median;
}

SweepSummary run_sweep(MPI_Comm comm, const std::vector<Trial>& trials, ResultsFile& results, const TrialRunner& runner,
                       const std::function<void(const Trial&)>& on_recorded, const PruningConfig& pruning) {
  auto start = std::chrono::steady_clock::now();
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);

  // Rank 0 reads which rows are unfinished and shares the list, so every rank sees the same work list.
  std::vector<int64_t> todo;
  int64_t n_todo = 0;
  if (rank == 0) {
    auto statuses = results.read_statuses();
    for (size_t i = 0; i < statuses.size(); ++i) {
      if (!is_finished(statuses[i])) todo.push_back(static_cast<int64_t>(i));
    }
    n_todo = static_cast<int64_t>(todo.size());
  }
  MPI_Bcast(&n_todo, 1, MPI_INT64_T, 0, comm);
  todo.resize(static_cast<size_t>(n_todo));
  if (n_todo > 0) MPI_Bcast(todo.data(), static_cast<int>(n_todo), MPI_INT64_T, 0, comm);

  SweepSummary local;
  local.total = static_cast<int64_t>(trials.size());
  local.already_finished = local.total - n_todo;
  if (rank == 0) {
    std::fprintf(stderr, "sweep: %lld trials, %lld finished before, %lld to run on %d rank(s)\n",
                 static_cast<long long>(local.total), static_cast<long long>(local.already_finished),
                 static_cast<long long>(n_todo), size);
  }
  const std::string host = host_name();
  // A trial that failed because of the machine (a full disk, an I/O error: EnvironmentError) is not recorded: it
  // stays pending and the next run retries it. Such a failure would most likely hit the next trials too (each
  // trains for up to an hour before it writes its checkpoint), so this rank stops and no rank is handed another
  // trial; trials already running elsewhere finish and are recorded. The run then ends with that error (exit 7).
  std::exception_ptr environment_error;
  {
    WorkCounter counter(comm);
    while (!stop_requested()) {
      const int64_t k = counter.next();
      if (k >= n_todo) break;
      const Trial& trial = trials.at(static_cast<size_t>(todo[static_cast<size_t>(k)]));
      auto t0 = std::chrono::steady_clock::now();
      TrialResult r;
      // The live row, at most once a second; a failure to write it (a full disk) is reported once and does not
      // stop the trial: the final row meets the same disk and is handled there.
      auto last_live = std::chrono::steady_clock::now() - std::chrono::seconds(2);
      bool live_failed = false;
      // The pruning peers (finished ok trials of this architecture and fraction), read again every 30 s.
      std::vector<ResultsFile::OkCurve> peers;
      auto peers_read = std::chrono::steady_clock::now() - std::chrono::hours(1);
      const TrialProgress progress = [&](const TrialResult& now) {
        const auto t = std::chrono::steady_clock::now();
        if (!live_failed && t - last_live >= std::chrono::seconds(1)) {
          last_live = t;
          try {
            results.write_running_row(trial, now, rank, host);
          } catch (const std::exception& e) {
            live_failed = true;
            std::fprintf(stderr, "sweep [rank %d] trial %lld: its live row is not updated any more: %s\n", rank,
                         static_cast<long long>(trial.id), e.what());
          }
        }
        if (!pruning.enabled || static_cast<int64_t>(now.val_curve.size()) < pruning.min_checks) return false;
        if (t - peers_read >= std::chrono::seconds(30)) {
          peers_read = t;
          try {
            peers = results.read_ok_curves();
          } catch (const std::exception&) {
            peers.clear();  // no pruning on a failed read: the trial trains on
          }
        }
        // A Lurz-schedule trial is judged by its own criterion, the validation correlation, against the peers
        // that have one; any other by the validation loss.
        const bool by_correlation = !now.val_correlation_curve.empty();
        std::vector<const std::vector<double>*> same;
        for (const auto& p : peers)
          if (p.architecture == trial.architecture && p.data_fraction == trial.data_fraction)
            same.push_back(by_correlation ? &p.correlation_curve : &p.curve);
        return median_rule_prunes(pruning, by_correlation ? now.val_correlation_curve : now.val_curve, same,
                                  by_correlation ? CurveDirection::higher_is_better : CurveDirection::lower_is_better);
      };
      try {
        r = runner(trial, progress);
      } catch (const EnvironmentError&) {
        environment_error = std::current_exception();
      } catch (const DivergedError& e) {
        r = TrialResult{};
        r.status = TrialStatus::diverged;
        r.message = e.what();
      } catch (const std::exception& e) {
        r = TrialResult{};
        r.status = TrialStatus::failed;
        r.message = e.what();
      }
      // A trial continued from a saved state reports the time of the earlier processes too; keep the larger.
      r.wall_seconds = std::max(r.wall_seconds,
                                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      // A trial this run does not finish goes back from its live "running" row to "pending" (best effort: a row
      // left "running" is unfinished as well).
      auto leave_pending = [&] {
        try {
          results.mark_pending(trial);
        } catch (const std::exception&) {
        }
      };
      if (!environment_error) {
        if (stop_requested() && r.status != TrialStatus::ok) {  // interrupted mid-trial: leave it pending for the rerun
          leave_pending();
          break;
        }
        try {
          results.write_row(trial, r, rank, host);
          if (on_recorded) on_recorded(trial);
        } catch (const EnvironmentError&) {
          environment_error = std::current_exception();
        }
      }
      if (environment_error) {
        leave_pending();
        counter.exhaust();
        try {
          std::rethrow_exception(environment_error);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "sweep [rank %d] trial %lld left pending (retried by the next run), no more trials "
                       "are started: %s\n", rank, static_cast<long long>(trial.id), e.what());
        }
        break;
      }
      ++local.ran;
      local.ok += r.status == TrialStatus::ok;
      local.diverged += r.status == TrialStatus::diverged;
      local.failed += r.status == TrialStatus::failed;
      local.pruned += r.status == TrialStatus::pruned;
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      double per_trial = elapsed / static_cast<double>(k + 1);  // k+1 trials were handed out before this finished
      // The Lurz schedule's criterion beside the loss: what select ranks its trials by.
      char val_corr[48] = "";
      if (std::isfinite(r.best_val_correlation)) std::snprintf(val_corr, sizeof val_corr, " (val corr %.4f)", r.best_val_correlation);
      std::fprintf(stderr, "sweep [rank %d] trial %lld (%s, draw %lld, fraction %g): %s val %.6g%s corr %.4f in %s | %lld/%lld handed out, ETA %s\n",
                   rank, static_cast<long long>(trial.id), trial.architecture.c_str(),
                   static_cast<long long>(trial.draw), trial.data_fraction, std::string(status_name(r.status)).c_str(), r.best_val_loss,
                   val_corr, r.test_correlation, format_duration(r.wall_seconds).c_str(), static_cast<long long>(k + 1),
                   static_cast<long long>(n_todo), format_duration(per_trial * static_cast<double>(n_todo - k - 1)).c_str());
    }
    barrier_without_polling(comm);  // the collectives below (window free, file close) then return at once
  }
  local.stopped = stop_requested();
  results.close();  // collective

  SweepSummary total = local;
  int64_t sums[5] = {local.ran, local.ok, local.diverged, local.failed, local.pruned};
  MPI_Allreduce(MPI_IN_PLACE, sums, 5, MPI_INT64_T, MPI_SUM, comm);
  total.ran = sums[0];
  total.ok = sums[1];
  total.diverged = sums[2];
  total.failed = sums[3];
  total.pruned = sums[4];
  int stopped = local.stopped ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, comm);
  total.stopped = stopped != 0;
  try {
    run_agreed(comm, [&] {
      if (environment_error) std::rethrow_exception(environment_error);
    });
  } catch (const EnvironmentError& e) {
    total.environment_error = e.what();  // the same text on every rank
  }
  total.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return total;
}

TrialResult run_dry_trial(const SweepConfig& sweep, const Trial& trial, const TrialProgress& progress) {
  auto u = [&](const char* stream) { return unit_interval(hash_string(stream + std::to_string(trial.id), sweep.seed)); };
  const DryRunConfig& d = sweep.dry_run;
  TrialResult r;
  r.status = TrialStatus::ok;
  // A smooth synthetic landscape in the hyperparameters plus trial noise, so `select` has something to rank.
  double landscape = 0;
  for (const auto& [name, v] : trial.hyperparameters) landscape += std::pow(std::log10(std::fabs(v) + 1e-12) + 2.0, 2);
  r.best_val_loss = 1.0 + 0.01 * landscape + 0.05 * u("noise") + 0.1 * (1.0 - trial.data_fraction);
  r.test_correlation = 0.6 - 0.5 * (r.best_val_loss - 1.0);
  r.feve = r.test_correlation * r.test_correlation;
  r.fraction_oracle = r.test_correlation / 0.8;
  r.iterations = 50 * (5 + static_cast<int64_t>(10 * u("iters")));
  r.steps = r.iterations;
  auto check = [&r](size_t c) { return r.best_val_loss + 1.0 / static_cast<double>(c + 1); };
  for (int64_t c = 0; c < r.iterations / 50; ++c) r.val_curve.push_back(check(static_cast<size_t>(c)));
  // The wait, with a synthetic check every 0.1 s reported as the live row (and offered to the pruning rule).
  const double seconds = d.min_seconds + u("time") * (d.max_seconds - d.min_seconds);
  const auto start = std::chrono::steady_clock::now();
  TrialResult live;
  live.status = TrialStatus::running;
  for (double waited = 0; waited < seconds; waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()) {
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(0.1, seconds - waited)));
    if (!progress) continue;
    live.iterations += 50;
    live.steps = live.iterations;
    live.val_curve.push_back(check(live.val_curve.size()));
    live.best_val_loss = live.val_curve.back();
    live.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress(live)) {
      live.status = TrialStatus::pruned;
      live.message = "pruned by the median stopping rule at check " + std::to_string(live.val_curve.size());
      return live;
    }
  }
  if (u("fail") < d.fail_fraction) throw Error("dry-run trial failed on purpose (dry_run.fail_fraction)");
  r.neuron_correlation.resize(static_cast<size_t>(d.neurons));
  for (size_t i = 0; i < r.neuron_correlation.size(); ++i) {
    r.neuron_correlation[i] = static_cast<float>(r.test_correlation + 0.1 * (u(("n" + std::to_string(i)).c_str()) - 0.5));
  }
  return r;
}

}  // namespace v1sysid
