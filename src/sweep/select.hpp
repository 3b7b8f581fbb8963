// Table 1 of Ecker et al. 2019 from a results file: per architecture (and data fraction) the trial with the
// lowest validation loss, and the mean +- SD of test correlation over the `top` best trials by validation loss.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace v1sysid {

struct SelectionRow {
  std::string architecture;
  double data_fraction = 1;
  int64_t trials_ok = 0, trials_total = 0;
  int64_t best_trial = -1;
  double best_val_loss = 0;
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
