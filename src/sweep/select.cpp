#include "sweep/select.hpp"

#include "core/error.hpp"
#include "io/h5.hpp"
#include "sweep/results_file.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

namespace v1sysid {

std::vector<double> read_val_correlations(const h5::File& results, size_t rows) {
  return results.exists("trials/best_val_correlation") ? results.read<double>("trials/best_val_correlation")
                                                       : std::vector<double>(rows, std::nan(""));
}

const char* ranked_by_name(RankedBy by) {
  return by == RankedBy::validation_correlation ? "validation correlation" : "validation loss";
}

RankedBy ranking_of(const std::vector<size_t>& rows, const std::vector<double>& val_correlation) {
  const bool all = !rows.empty() && std::all_of(rows.begin(), rows.end(), [&](size_t i) {
    return std::isfinite(val_correlation.at(i));
  });
  return all ? RankedBy::validation_correlation : RankedBy::validation_loss;
}

void rank_trials(std::vector<size_t>& rows, RankedBy by, const std::vector<double>& val_loss,
                 const std::vector<double>& val_correlation) {
  if (by == RankedBy::validation_correlation)
    std::stable_sort(rows.begin(), rows.end(), [&](size_t a, size_t b) { return val_correlation[a] > val_correlation[b]; });
  else
    std::stable_sort(rows.begin(), rows.end(), [&](size_t a, size_t b) { return val_loss[a] < val_loss[b]; });
}

std::vector<SelectionRow> select_best(const std::string& path, int64_t top) {
  h5::File f = h5::File::open(path);
  auto arch = f.read_strings("trials/architecture");
  auto status = f.read_strings("trials/status");
  auto val = f.read<double>("trials/best_val_loss");
  auto corr = f.read<double>("trials/test_correlation");
  auto val_corr = read_val_correlations(f, arch.size());
  auto fraction = f.read<double>("trials/data_fraction");
  std::map<std::string, std::vector<double>> hyper;
  if (f.exists("trials/hyperparameters")) {
    for (const auto& name : f.list("trials/hyperparameters")) hyper[name] = f.read<double>("trials/hyperparameters/" + name);
  }
  const size_t n = arch.size();
  if (status.size() != n || val.size() != n || corr.size() != n || fraction.size() != n || val_corr.size() != n) {
    throw DataError("trials/ datasets have different lengths", path, "the file is not a v1sysid results file");
  }
  // A finished row whose values no longer match its checksum was damaged after it was written: it counts as
  // not finished, so a damaged loss can never be picked as the best.
  std::vector<bool> damaged(n, false);
  if (!f.exists("trials/row_checksum")) {
    std::fprintf(stderr, "select: warning: %s has no row checksums (format_version 1): its rows are not verified\n",
                 path.c_str());
  }
  for (int64_t i : rows_failing_checksum(f)) {
    damaged[static_cast<size_t>(i)] = true;
    std::fprintf(stderr, "select: warning: trial %lld: its row fails its checksum (trials/row_checksum) in %s: the "
                 "file was changed or damaged after the sweep wrote it; the trial is left out (rerun the sweep to "
                 "redo it)\n", static_cast<long long>(i), path.c_str());
  }
  // Groups in order of first appearance, keyed by (architecture, data fraction).
  std::vector<SelectionRow> rows;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < n; ++i) {
    size_t g = 0;
    while (g < rows.size() && !(rows[g].architecture == arch[i] && rows[g].data_fraction == fraction[i])) ++g;
    if (g == rows.size()) {
      rows.push_back({});
      rows.back().architecture = arch[i];
      rows.back().data_fraction = fraction[i];
      members.emplace_back();
    }
    ++rows[g].trials_total;
    if (stored_status(status[i], static_cast<int64_t>(i), path) == TrialStatus::ok && std::isfinite(val[i]) && !damaged[i])
      members[g].push_back(i);
  }
  for (size_t g = 0; g < rows.size(); ++g) {
    auto& m = members[g];
    auto& row = rows[g];
    row.trials_ok = static_cast<int64_t>(m.size());
    if (m.empty()) continue;
    row.ranked_by = ranking_of(m, val_corr);
    const auto with_correlation = std::count_if(m.begin(), m.end(), [&](size_t i) { return std::isfinite(val_corr[i]); });
    if (row.ranked_by == RankedBy::validation_loss && with_correlation > 0) {
      std::fprintf(stderr, "select: warning: %s at data fraction %g: %lld of %lld ok trials have no validation "
                   "correlation (they finished before results format 5), so the group is ranked by validation loss; "
                   "run the sweep again into a new --out (or with --force) to rank its Lurz-schedule trials by validation "
                   "correlation\n", row.architecture.c_str(), row.data_fraction,
                   static_cast<long long>(static_cast<int64_t>(m.size()) - with_correlation), static_cast<long long>(m.size()));
    }
    rank_trials(m, row.ranked_by, val, val_corr);
    const size_t best = m.front();
    row.best_trial = static_cast<int64_t>(best);
    row.best_val_loss = val[best];
    row.best_val_correlation = val_corr[best];
    row.best_test_correlation = corr[best];
    for (const auto& [name, values] : hyper) row.best_hyperparameters[name] = values[best];
    const size_t k = std::min<size_t>(static_cast<size_t>(std::max<int64_t>(top, 1)), m.size());
    row.top_count = static_cast<int64_t>(k);
    row.top_trials.assign(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(k));
    double mean = 0;
    for (size_t j = 0; j < k; ++j) mean += corr[m[j]];
    mean /= static_cast<double>(k);
    double ss = 0;
    for (size_t j = 0; j < k; ++j) ss += (corr[m[j]] - mean) * (corr[m[j]] - mean);
    row.top_mean_test_correlation = mean;
    row.top_sd_test_correlation = k > 1 ? std::sqrt(ss / static_cast<double>(k - 1)) : 0.0;
  }
  return rows;
}

std::string selection_markdown(const std::vector<SelectionRow>& rows, int64_t top) {
  std::ostringstream s;
  char buf[512];
  s << "| architecture | data fraction | trials ok | ranked by | best val loss | best val corr | test corr (best) | "
       "test corr top-" << top << " (mean +- SD) | best hyperparameters |\n|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    std::string hp;
    for (const auto& [k, v] : r.best_hyperparameters) {
      std::snprintf(buf, sizeof buf, "%s%s=%.4g", hp.empty() ? "" : ", ", k.c_str(), v);
      hp += buf;
    }
    if (r.best_trial < 0) {
      std::snprintf(buf, sizeof buf, "| %s | %g | 0/%lld | - | - | - | - | - | - |\n", r.architecture.c_str(),
                    r.data_fraction, static_cast<long long>(r.trials_total));
    } else {
      char val_corr[32] = "-";
      if (std::isfinite(r.best_val_correlation)) std::snprintf(val_corr, sizeof val_corr, "%.4f", r.best_val_correlation);
      std::snprintf(buf, sizeof buf, "| %s | %g | %lld/%lld | %s | %.6g | %s | %.4f | %.4f +- %.4f | %s |\n",
                    r.architecture.c_str(), r.data_fraction, static_cast<long long>(r.trials_ok),
                    static_cast<long long>(r.trials_total), ranked_by_name(r.ranked_by), r.best_val_loss, val_corr,
                    r.best_test_correlation, r.top_mean_test_correlation, r.top_sd_test_correlation, hp.c_str());
    }
    s << buf;
  }
  return s.str();
}

std::string selection_csv(const std::vector<SelectionRow>& rows) {
  std::ostringstream s;
  s << "architecture,data_fraction,trials_ok,trials_total,best_trial,best_val_loss,best_test_correlation,"
       "top_count,top_mean_test_correlation,top_sd_test_correlation,ranked_by,best_val_correlation\n";
  s.precision(10);
  for (const auto& r : rows) {
    s << r.architecture << ',' << r.data_fraction << ',' << r.trials_ok << ',' << r.trials_total << ',' << r.best_trial
      << ',' << r.best_val_loss << ',' << r.best_test_correlation << ',' << r.top_count << ','
      << r.top_mean_test_correlation << ',' << r.top_sd_test_correlation << ',' << ranked_by_name(r.ranked_by) << ','
      << r.best_val_correlation << '\n';
  }
  return s.str();
}

}  // namespace v1sysid
