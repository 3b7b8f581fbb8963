// Table 1 of Ecker et al. 2019 from a results file: per architecture (and data fraction) the best trial by its
// schedule's validation criterion, and the mean +- SD of test correlation over the `top` best trials by it.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace v1sysid {

namespace h5 {
class File;
}

// trials/best_val_correlation of a results file with `rows` rows; all NaN in files before format 5, which have
// no such column (their trials rank by validation loss).
std::vector<double> read_val_correlations(const h5::File& results, size_t rows);

// The validation criterion the ok trials of one (architecture, data fraction) group are ranked by. Ecker et al.'s
// schedule stops on the validation loss, so its trials rank by it, lowest first; Lurz et al.'s schedule keeps the
// epoch of best validation correlation and selects models by it, highest first (trials/best_val_correlation,
// results format 5 on).
enum class RankedBy { validation_loss, validation_correlation };
const char* ranked_by_name(RankedBy by);  // "validation loss" / "validation correlation"
// validation_correlation when every one of `rows` has a finite val_correlation (Lurz-schedule trials), else
// validation_loss: Ecker-schedule trials, and groups with Lurz trials that finished under results format 4,
// which has no correlation column (their correlation reads NaN).
RankedBy ranking_of(const std::vector<size_t>& rows, const std::vector<double>& val_correlation);
// Sorts the row indices `rows` best first by `by` (stable: ties keep trial order).
void rank_trials(std::vector<size_t>& rows, RankedBy by, const std::vector<double>& val_loss,
                 const std::vector<double>& val_correlation);

struct SelectionRow {
  std::string architecture;
  double data_fraction = 1;
  int64_t trials_ok = 0, trials_total = 0;
  int64_t best_trial = -1;
  RankedBy ranked_by = RankedBy::validation_loss;
  double best_val_loss = 0;
  double best_val_correlation = std::numeric_limits<double>::quiet_NaN();  // Lurz-schedule groups only
  double best_test_correlation = 0;
  double top_mean_test_correlation = 0;
  double top_sd_test_correlation = 0;  // sample SD (ddof 1); 0 with a single trial
  int64_t top_count = 0;
  std::vector<int64_t> top_trials;  // the top_count best ok trials, best first (what `ensemble` takes)
  std::map<std::string, double> best_hyperparameters;
};

std::vector<SelectionRow> select_best(const std::string& results_path, int64_t top);
std::string selection_markdown(const std::vector<SelectionRow>& rows, int64_t top);
std::string selection_csv(const std::vector<SelectionRow>& rows);

}  // namespace v1sysid
