// Tests of src/metrics: closed-form cases worked by hand, values cross-checked against numpy, degenerate
// inputs, and a simulated Poisson population whose correlation ceiling and FEV are known analytically.
#include "metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace m = v1sysid::metrics;
using v1sysid::DataError;
using v1sysid::DivergedError;

namespace {

m::ConstMatrix<float> as_matrix(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return m::ConstMatrix<float>(v, rows, cols);
}

std::vector<int64_t> iota_rows(int64_t n) {
  std::vector<int64_t> rows(n);
  for (int64_t k = 0; k < n; ++k) rows[k] = k;
  return rows;
}

template <class F>
void expect_data_error(F&& f, const std::string& message_part) {
  try {
    f();
    ADD_FAILURE() << "expected DataError containing \"" << message_part << "\"";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
  }
}

bool all_finite(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

}  // namespace

// ---- grouping ------------------------------------------------------------------------------------------

TEST(Metrics, GroupRepeatsSortsImagesByIdAndKeepsTrialOrder) {
  //                                   row:  0  1  2  3  4  5  6
  const std::vector<int64_t> image_ids = {9, 4, 9, 7, 4, 1, 9};
  const m::RepeatGroups g = m::group_repeats({6, 1, 2, 4, 0, 3}, image_ids);  // row 5 is another tier
  ASSERT_EQ(g.n_images(), 3);
  EXPECT_EQ(g.image_ids, (std::vector<int64_t>{4, 7, 9}));
  EXPECT_EQ(g.rows[0], (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(g.rows[1], (std::vector<int64_t>{3}));
  EXPECT_EQ(g.rows[2], (std::vector<int64_t>{6, 2, 0}));
  EXPECT_EQ(g.n_trials(), 6);
  EXPECT_EQ(g.min_repeats(), 1);
  EXPECT_EQ(g.max_repeats(), 3);
  EXPECT_EQ(g.n_repeated_images(), 2);
}

TEST(Metrics, GroupRepeatsRejectsBadRows) {
  const std::vector<int64_t> image_ids = {1, 1, 2};
  expect_data_error([&] { m::group_repeats({}, image_ids); }, "no trials");
  expect_data_error([&] { m::group_repeats({0, 3}, image_ids); }, "trial row 3 is outside the 3 rows");
  expect_data_error([&] { m::group_repeats({0, -1}, image_ids); }, "trial row -1 is outside");
  expect_data_error([&] { m::group_repeats({0, 2, 0}, image_ids); }, "trial row 0 is listed twice");
}

TEST(Metrics, ConstMatrixChecksTheSize) {
  const std::vector<float> v(6, 1.0f);
  EXPECT_NO_THROW(as_matrix(v, 2, 3));
  expect_data_error([&] { m::ConstMatrix<float>(v, 4, 2, "predictions"); }, "predictions holds 6 values, not 4 x 2");
}

// ---- Pearson -------------------------------------------------------------------------------------------

TEST(Metrics, PearsonClosedForms) {
  // Column 0: x = (1, 2, 3), y = (1, 3, 2). Means 2 and 2, deviations (-1, 0, 1) and (-1, 1, 0):
  //   sum dx dy = 1, sum dx^2 = sum dy^2 = 2, so r = 1 / sqrt(2 * 2) = 0.5.
  // Column 1: y = 3x - 7 (perfect affine prediction) -> 1.  Column 2: y = -x -> -1.
  const std::vector<float> x = {1, 10, 4, 2, 20, 5, 3, 40, 6};
  const std::vector<float> y = {1, 23, -4, 3, 53, -5, 2, 113, -6};
  const std::vector<double> r = m::pearson_per_neuron(as_matrix(x, 3, 3), as_matrix(y, 3, 3));
  ASSERT_EQ(r.size(), 3u);
  EXPECT_NEAR(r[0], 0.5, 1e-15);
  EXPECT_NEAR(r[1], 1.0, 1e-12);
  EXPECT_NEAR(r[2], -1.0, 1e-12);
}

TEST(Metrics, PearsonIsZeroWhenEitherSideIsConstantOrBelowTheSdThreshold) {
  // Column 0 constant target, column 1 constant prediction. Column 2 varies by +-0.9e-5 around 1
  // (SD 0.9e-5 <= 1e-5 -> 0 as Ecker), column 3 by +-2e-5 (SD 2e-5 > 1e-5 -> a real correlation, here 1).
  const std::vector<double> a = {1, 1, 1 - 0.9e-5, 1 - 2e-5,  //
                                 2, 1, 1 + 0.9e-5, 1 + 2e-5};
  const std::vector<double> b = {5, 3, 1, 1,  //
                                 5, 4, 2, 2};
  const std::vector<double> r = m::pearson_per_neuron(m::ConstMatrix<double>(a, 2, 4), m::ConstMatrix<double>(b, 2, 4));
  EXPECT_EQ(r[0], 0.0);
  EXPECT_EQ(r[1], 0.0);
  EXPECT_EQ(r[2], 0.0);
  EXPECT_NEAR(r[3], 1.0, 1e-9);
}

TEST(Metrics, PearsonRejectsMismatchedShapes) {
  const std::vector<float> a(6, 1.0f), b(6, 1.0f);
  expect_data_error([&] { m::pearson_per_neuron(as_matrix(a, 2, 3), as_matrix(b, 3, 2)); }, "is [2, 3] but");
}

// ---- hand-worked repeat example ------------------------------------------------------------------------

// One neuron, image A shown twice (1, 3) and image B three times (4, 6, 8); the model predicts 4 for A and
// 5 for B on every trial.
//   A: mean 2, var_rep (ddof 1) = (1 + 1) / 1 = 2;  B: mean 6, var_rep = (4 + 0 + 4) / 2 = 4.
//   Ecker:  obs_var = mean(2/2, 4/3) = 7/6;  total_var = var(2, 6; ddof 1) = 8;  FEV = (8 - 7/6) / 8 = 41/48.
//   Lurz:   trials 1 3 4 6 8, mean 4.4, sum of squares 29.2, TotalVar = 29.2 / 4 = 7.3; NoiseVar = mean(2, 4) = 3;
//           FEV = 4.3 / 7.3 = 43/73;  MSE = (9 + 1 + 1 + 1 + 9) / 5 = 4.2;  FEVE = 1 - 1.2 / 4.3 = 31/43.
//   Oracle: leave-one-out means 3, 1 (A) and 7, 6, 5 (B) against trials 1, 3, 4, 6, 8; deviations from 4.4 and
//           4.4 give sum dx dy = 13.2, sum dx^2 = 29.2, sum dy^2 = 23.2, r = 13.2 / sqrt(29.2 * 23.2).
TEST(Metrics, HandWorkedUnequalRepeats) {
  const std::vector<float> responses = {1, 3, 4, 6, 8};
  const std::vector<float> predictions = {4, 4, 5, 5, 5};
  const std::vector<int64_t> image_ids = {10, 10, 20, 20, 20};
  const m::RepeatGroups g = m::group_repeats(iota_rows(5), image_ids);
  const auto y = as_matrix(responses, 5, 1);
  const auto p = as_matrix(predictions, 5, 1);

  const m::VarianceDecomposition v = m::variance_decomposition(y, g);
  EXPECT_NEAR(v.mean_noise_var[0], 7.0 / 6.0, 1e-14);
  EXPECT_NEAR(v.mean_var[0], 8.0, 1e-14);
  EXPECT_NEAR(v.trial_var[0], 7.3, 1e-14);
  EXPECT_NEAR(v.trial_noise_var[0], 3.0, 1e-14);
  EXPECT_EQ(v.n_images, 2);
  EXPECT_EQ(v.n_trials, 5);
  EXPECT_NEAR(m::fev_per_neuron(v)[0], 41.0 / 48.0, 1e-14);
  EXPECT_NEAR(m::fev_single_trial_per_neuron(v)[0], 43.0 / 73.0, 1e-14);
  EXPECT_NEAR(m::feve_per_neuron(p, y, g, v)[0], 31.0 / 43.0, 1e-14);
  EXPECT_NEAR(m::oracle_correlation_per_neuron(y, g)[0], 13.2 / std::sqrt(29.2 * 23.2), 1e-14);
  EXPECT_NEAR(m::correlation_upper_bound(m::fev_per_neuron(v)), std::sqrt(41.0 / 48.0), 1e-14);
  // Two images: the per-image predictions (4, 5) and repeat means (2, 6) rise together -> r = 1.
  EXPECT_NEAR(m::test_correlation_per_neuron(p, y, g)[0], 1.0, 1e-14);
}

// ---- numpy cross-check ---------------------------------------------------------------------------------

// Eleven trials of four images (ids 3, 5, 7 with 3, 4, 3 repeats, id 9 shown once), three neurons (the last
// constant). Expected values from the reference formulas written out in numpy 1.24.2 (/usr/bin/python3, run
// by hand, not by the test): Ecker's compute_test_corr (pearson, SD > 1e-5), oracle.ipynb's obs_var/total_var,
// and Lurz utility/measures.py's corr (ddof 0, eps 1e-8), compute_oracle_corr, compute_FEV and the lstsq
// fraction oracle. Printed by numpy:
//   test_corr      [0.9849959705957 0.6401625593124 0]
//   single_trial   [0.9293043183751 0.4110595009357 0]
//   oracle         [0.8674051260302 0.0639382037193 0]          (Lurz corr, eps 1e-8)
//   obs_var        [0.3611111111111 0.2569444444444 0]   total_var [8.5833333333333 0.3958333333333 0]
//   FEV (Ecker)    [0.957928802589  0.3508771929825 nan]
//   TotalVar       [7.8333333333333 0.8916666666667 0]   NoiseVar  [1.2222222222222 0.8055555555556 0]
//   FEV (Lurz)     [0.8439716312057 0.0965732087227 nan]
//   FEVe           [1.0336134453782 0.5564516129032 -inf]
//   fraction oracle 1.1003146227623 (single-trial corr, Lurz eps)
// numpy's nan/-inf for the constant neuron are 0 here by design.
struct NumpyCase {
  std::vector<int64_t> image_ids = {7, 3, 7, 5, 3, 7, 9, 5, 5, 5, 3};
  std::vector<float> responses = {1, 0.5f, 2, 4, 1.5f, 2, 3, 2.5f, 2, 6, 0, 2, 2, 1, 2, 2, 3, 2,
                                  5, 2, 2, 8, 1, 2, 7, 0.5f, 2, 9, 1.5f, 2, 3, 2, 2};
  std::vector<float> predictions = {2, 1, 1, 3, 1.25f, 2, 2, 1, 3, 7, 0.75f, 1, 3, 1.25f, 2, 2, 1, 3,
                                    4, 1.125f, 1, 7, 0.75f, 2, 7, 0.75f, 3, 7, 0.75f, 1, 3, 1.25f, 2};
};

TEST(Metrics, MatchesNumpyReferenceFormulas) {
  const NumpyCase c;
  const auto y = as_matrix(c.responses, 11, 3);
  const auto p = as_matrix(c.predictions, 11, 3);
  const m::EvaluationMetrics e = m::evaluate(p, y, iota_rows(11), c.image_ids, {0.5});

  const double exact = 1e-12, lurz_eps = 1e-7;  // Lurz adds 1e-8 to SDs of order 1: ~1e-8 relative
  EXPECT_NEAR(e.test_correlation_per_neuron[0], 0.9849959705957, exact);
  EXPECT_NEAR(e.test_correlation_per_neuron[1], 0.6401625593124, exact);
  EXPECT_EQ(e.test_correlation_per_neuron[2], 0.0);
  EXPECT_NEAR(e.single_trial_correlation_per_neuron[0], 0.9293043183751, exact);
  EXPECT_NEAR(e.single_trial_correlation_per_neuron[1], 0.4110595009357, exact);
  EXPECT_EQ(e.single_trial_correlation_per_neuron[2], 0.0);
  EXPECT_NEAR(e.oracle_per_neuron[0], 0.8674051260302, lurz_eps);
  EXPECT_NEAR(e.oracle_per_neuron[1], 0.0639382037193, lurz_eps);
  EXPECT_EQ(e.oracle_per_neuron[2], 0.0);
  EXPECT_NEAR(e.fev_per_neuron[0], 0.957928802589, exact);
  EXPECT_NEAR(e.fev_per_neuron[1], 0.3508771929825, exact);
  EXPECT_EQ(e.fev_per_neuron[2], 0.0);
  EXPECT_NEAR(e.fev_single_trial_per_neuron[0], 0.8439716312057, exact);
  EXPECT_NEAR(e.fev_single_trial_per_neuron[1], 0.0965732087227, exact);
  EXPECT_EQ(e.fev_single_trial_per_neuron[2], 0.0);
  EXPECT_NEAR(e.feve_per_neuron[0], 1.0336134453782, exact);
  EXPECT_NEAR(e.feve_per_neuron[1], 0.5564516129032, exact);
  EXPECT_EQ(e.feve_per_neuron[2], 0.0);
  EXPECT_NEAR(e.fraction_oracle, 1.1003146227623, lurz_eps);

  const m::VarianceDecomposition v = m::variance_decomposition(y, m::group_repeats(iota_rows(11), c.image_ids));
  EXPECT_NEAR(v.mean_noise_var[0], 0.3611111111111, exact);
  EXPECT_NEAR(v.mean_var[1], 0.3958333333333, exact);
  EXPECT_NEAR(v.trial_var[0], 7.8333333333333, exact);
  EXPECT_NEAR(v.trial_noise_var[1], 0.8055555555556, exact);
  EXPECT_EQ(v.n_images, 3);  // image 9 (one trial) is left out of the variances
  EXPECT_EQ(v.n_trials, 10);

  // Means over neurons, the upper bound and the threshold variant (only neuron 0 has single-trial FEV > 0.5).
  EXPECT_NEAR(e.test_correlation, (0.9849959705957 + 0.6401625593124) / 3, exact);
  EXPECT_NEAR(e.feve, (1.0336134453782 + 0.5564516129032) / 2, exact);  // the constant neuron is left out
  EXPECT_EQ(e.feve_neurons_left_out, 1);
  EXPECT_NEAR(e.correlation_upper_bound, (std::sqrt(0.957928802589) + std::sqrt(0.3508771929825)) / 3, exact);
  EXPECT_EQ(e.fev_threshold, 0.5);
  EXPECT_EQ(e.n_neurons_above_threshold, 1);
  EXPECT_NEAR(e.feve_above_threshold, 1.0336134453782, exact);
  const m::EvaluationMetrics all = m::evaluate(p, y, iota_rows(11), c.image_ids, {0.0});
  EXPECT_EQ(all.n_neurons_above_threshold, 2);  // the constant neuron's FEV is 0, not > 0
  EXPECT_NEAR(all.feve_above_threshold, (1.0336134453782 + 0.5564516129032) / 2, exact);

  EXPECT_EQ(e.n_trials, 11);
  EXPECT_EQ(e.n_images, 4);
  EXPECT_EQ(e.n_repeated_images, 3);
  EXPECT_EQ(e.min_repeats, 1);
  EXPECT_EQ(e.max_repeats, 4);
}

// Neuron 1 varies more across repeats than across images: trial_var 100/3 < noise_var 50, so its explainable
// variance is negative and the FEVE ratio, 1 - (MSE - 50) / (-50/3), is meaningless (+73 for the constant
// prediction -30 below). Such neurons are left out of the mean FEVE and counted (Cadena et al. 2019).
TEST(Metrics, FeveLeavesOutNeuronsWithoutExplainableVariance) {
  const std::vector<int64_t> image_ids = {1, 2, 1, 2};
  // Neuron 0: image 1 -> {1, 3}, image 2 -> {5, 7}: trial_var 20/3, noise_var 2, explainable 14/3.
  // Neuron 1: image 1 -> {0, 10}, image 2 -> {0, 10}.
  const std::vector<float> responses = {1, 0, 5, 0, 3, 10, 7, 10};
  const std::vector<float> predictions = {2, -30, 6, -30, 2, -30, 6, -30};  // neuron 0: MSE 1
  const m::EvaluationMetrics e =
      m::evaluate(as_matrix(predictions, 4, 2), as_matrix(responses, 4, 2), iota_rows(4), image_ids);
  const double neuron0 = 1.0 - (1.0 - 2.0) / (20.0 / 3.0 - 2.0);
  EXPECT_NEAR(e.feve_per_neuron[0], neuron0, 1e-12);
  EXPECT_EQ(e.feve_per_neuron[1], 0.0);
  EXPECT_LT(e.fev_single_trial_per_neuron[1], 0.0);
  EXPECT_NEAR(e.feve, neuron0, 1e-12) << "the mean FEVE includes a neuron without explainable variance";
  EXPECT_EQ(e.feve_neurons_left_out, 1);
  // No neuron with explainable variance at all: 0 with every neuron counted as left out, never NaN.
  const std::vector<float> noise_only = {0, 0, 0, 0, 10, 10, 10, 10};
  const m::EvaluationMetrics none =
      m::evaluate(as_matrix(predictions, 4, 2), as_matrix(noise_only, 4, 2), iota_rows(4), image_ids);
  EXPECT_EQ(none.feve, 0.0);
  EXPECT_EQ(none.feve_neurons_left_out, 2);
}

TEST(Metrics, EvaluateUsesOnlyTheRequestedTierAndItsRowOrder) {
  // The numpy case again, now with three train trials in between (rows 0, 5 and 13) whose responses would
  // change every metric, and predictions listed in the tier's row order.
  const NumpyCase c;
  const std::vector<int64_t> train_rows = {0, 5, 13};
  std::vector<float> responses;
  std::vector<int64_t> image_ids;
  std::vector<v1sysid::Tier> tiers;
  int64_t test_trial = 0;
  for (int64_t row = 0; row < 14; ++row) {
    if (std::find(train_rows.begin(), train_rows.end(), row) != train_rows.end()) {
      responses.insert(responses.end(), {100, -50, 7});
      image_ids.push_back(3);
      tiers.push_back(v1sysid::Tier::train);
    } else {
      responses.insert(responses.end(), c.responses.begin() + 3 * test_trial, c.responses.begin() + 3 * test_trial + 3);
      image_ids.push_back(c.image_ids[test_trial]);
      tiers.push_back(v1sysid::Tier::test);
      ++test_trial;
    }
  }
  const auto p = as_matrix(c.predictions, 11, 3);
  const m::EvaluationMetrics e = m::evaluate(p, as_matrix(responses, 14, 3), tiers, v1sysid::Tier::test, image_ids);
  const m::EvaluationMetrics ref = m::evaluate(p, as_matrix(c.responses, 11, 3), iota_rows(11), c.image_ids);
  EXPECT_EQ(e.test_correlation_per_neuron, ref.test_correlation_per_neuron);
  EXPECT_EQ(e.feve_per_neuron, ref.feve_per_neuron);
  EXPECT_EQ(e.oracle_per_neuron, ref.oracle_per_neuron);
  EXPECT_EQ(e.fraction_oracle, ref.fraction_oracle);
  EXPECT_EQ(e.n_trials, 11);
}

// ---- degenerate inputs ---------------------------------------------------------------------------------

TEST(Metrics, PerfectAndNegatedPredictionsOfRepeatMeans) {
  // Predictions equal to the repeat means give test correlation 1; their negation gives -1.
  const std::vector<int64_t> image_ids = {1, 2, 3, 1, 2, 3};
  const std::vector<float> responses = {1, 4, 2, 3, 8, 6};  // means 2, 6, 4
  const std::vector<float> perfect = {2, 6, 4, 2, 6, 4};
  const std::vector<float> negated = {-2, -6, -4, -2, -6, -4};
  const auto y = as_matrix(responses, 6, 1);
  EXPECT_NEAR(m::evaluate(as_matrix(perfect, 6, 1), y, iota_rows(6), image_ids).test_correlation, 1.0, 1e-14);
  EXPECT_NEAR(m::evaluate(as_matrix(negated, 6, 1), y, iota_rows(6), image_ids).test_correlation, -1.0, 1e-14);
}

TEST(Metrics, ConstantResponsesGiveZerosNotNaN) {
  const std::vector<int64_t> image_ids = {1, 2, 1, 2, 1, 2};
  const std::vector<float> responses(6 * 2, 3.0f);
  const std::vector<float> predictions = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const m::EvaluationMetrics e =
      m::evaluate(as_matrix(predictions, 6, 2), as_matrix(responses, 6, 2), iota_rows(6), image_ids);
  for (const auto* v : {&e.test_correlation_per_neuron, &e.single_trial_correlation_per_neuron, &e.oracle_per_neuron,
                        &e.fev_per_neuron, &e.fev_single_trial_per_neuron, &e.feve_per_neuron}) {
    ASSERT_EQ(v->size(), 2u);
    EXPECT_EQ((*v)[0], 0.0);
    EXPECT_EQ((*v)[1], 0.0);
  }
  EXPECT_EQ(e.fraction_oracle, 0.0);
  EXPECT_EQ(e.correlation_upper_bound, 0.0);
  EXPECT_EQ(e.feve_above_threshold, 0.0);
  EXPECT_EQ(e.n_neurons_above_threshold, 0);
}

TEST(Metrics, SingleRepeatedImageIsFiniteAndHasNoExplainableVariance) {
  // One image shown four times: nothing varies across images, so test correlation and every FEV are 0.
  // The jackknife oracle is still defined and, as in the reference, exactly -1: with one image the
  // leave-one-out mean (sum - y) / 3 falls as y rises.
  const std::vector<int64_t> image_ids = {5, 5, 5, 5};
  const std::vector<float> responses = {1, 2, 4, 7};
  const std::vector<float> predictions = {3, 3, 3, 3};
  const m::EvaluationMetrics e =
      m::evaluate(as_matrix(predictions, 4, 1), as_matrix(responses, 4, 1), iota_rows(4), image_ids);
  EXPECT_EQ(e.test_correlation, 0.0);
  EXPECT_EQ(e.single_trial_correlation, 0.0);
  EXPECT_EQ(e.fev, 0.0);
  EXPECT_EQ(e.fev_single_trial, 0.0);  // trial_var == noise_var for a single image
  EXPECT_EQ(e.feve, 0.0);
  EXPECT_NEAR(e.oracle, -1.0, 1e-14);
  EXPECT_EQ(e.n_images, 1);
}

TEST(Metrics, NoRepeatsThrowDataError) {
  const std::vector<int64_t> image_ids = {1, 2, 3};
  const std::vector<float> responses = {1, 2, 3}, predictions = {1, 2, 4};
  const auto y = as_matrix(responses, 3, 1);
  expect_data_error([&] { m::evaluate(as_matrix(predictions, 3, 1), y, iota_rows(3), image_ids); },
                    "is shown more than once");
  const m::RepeatGroups g = m::group_repeats(iota_rows(3), image_ids);
  expect_data_error([&] { m::oracle_correlation_per_neuron(y, g); }, "is shown more than once");
  expect_data_error([&] { m::variance_decomposition(y, g); }, "is shown more than once");
  // The correlations alone are still defined without repeats.
  EXPECT_TRUE(all_finite(m::test_correlation_per_neuron(as_matrix(predictions, 3, 1), y, g)));
  // The message names the tier that was asked for (`evaluate --tier validation` used to blame the test tier).
  const std::vector<v1sysid::Tier> tiers(3, v1sysid::Tier::validation);
  expect_data_error([&] { m::evaluate(as_matrix(predictions, 3, 1), y, tiers, v1sysid::Tier::validation, image_ids); },
                    "of the validation tier is shown more than once");
  m::EvaluationOptions named;
  named.tier = "validation";
  try {
    m::evaluate(as_matrix(predictions, 3, 1), y, iota_rows(3), image_ids, named);
    ADD_FAILURE() << "no error";
  } catch (const v1sysid::DataError& e) {
    EXPECT_EQ(std::string(e.what()).find("test tier"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("image ids of the validation tier"), std::string::npos) << e.what();
  }
}

TEST(Metrics, EvaluateRejectsMismatchedAndBadInput) {
  const NumpyCase c;
  const auto y = as_matrix(c.responses, 11, 3);
  const auto p = as_matrix(c.predictions, 11, 3);
  const std::vector<float> two_neurons(22, 1.0f), ten_rows(30, 1.0f);
  expect_data_error([&] { m::evaluate(as_matrix(two_neurons, 11, 2), y, iota_rows(11), c.image_ids); },
                    "predictions have 2 neurons but responses 3");
  expect_data_error([&] { m::evaluate(as_matrix(ten_rows, 10, 3), y, iota_rows(11), c.image_ids); },
                    "predictions have 10 rows but the tier has 11 trials");
  expect_data_error([&] { m::evaluate(p, y, iota_rows(11), std::vector<int64_t>(10, 1)); },
                    "10 image ids for 11 response rows");
  expect_data_error([&] { m::evaluate(p, y, {}, c.image_ids); }, "no trials");
  std::vector<int64_t> out_of_range = iota_rows(11);
  out_of_range[4] = 11;
  expect_data_error([&] { m::evaluate(p, y, out_of_range, c.image_ids); }, "tier index 11 is outside");
  std::vector<int64_t> twice = iota_rows(11);
  twice[4] = 3;
  expect_data_error([&] { m::evaluate(p, y, twice, c.image_ids); }, "tier index 3 is listed twice");
  expect_data_error([&] { m::evaluate(p, y, std::vector<v1sysid::Tier>(4), v1sysid::Tier::test, c.image_ids); },
                    "4 tiers for 11 response rows");

  std::vector<float> nan_response = c.responses;
  nan_response[7] = std::numeric_limits<float>::quiet_NaN();
  expect_data_error([&] { m::evaluate(p, as_matrix(nan_response, 11, 3), iota_rows(11), c.image_ids); },
                    "trial 2, neuron 1 is not finite");
  std::vector<float> inf_prediction = c.predictions;
  inf_prediction[5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(m::evaluate(as_matrix(inf_prediction, 11, 3), y, iota_rows(11), c.image_ids), DivergedError);
}

TEST(Metrics, FractionOracleIsTheSlopeThroughTheOrigin) {
  // c = 0.8 o exactly -> 0.8. For o = (1, 2), c = (1, 1): sum(o c) / sum(o^2) = 3 / 5 (not the 0 slope that
  // a fit with intercept would give).
  EXPECT_NEAR(m::fraction_oracle({0.08, 0.4, 0.56}, {0.1, 0.5, 0.7}), 0.8, 1e-15);
  EXPECT_NEAR(m::fraction_oracle({1, 1}, {1, 2}), 0.6, 1e-15);
  EXPECT_EQ(m::fraction_oracle({0.3, 0.2}, {0, 0}), 0.0);
  expect_data_error([] { m::fraction_oracle({1, 2}, {1}); }, "2 correlations but 1 oracles");
  EXPECT_EQ(m::mean({}), 0.0);
  EXPECT_EQ(m::correlation_upper_bound({}), 0.0);
}

// ---- statistical recovery of known ceilings ------------------------------------------------------------

namespace {

// A population of independent Poisson neurons: neuron n fires at rate mu[i, n] = exp(a_n + b_n z_in) to image
// i (z standard normal), and each image is shown R_i times. Over the realised image set let S_n be the
// variance of the true rates across images and N_n their mean (the Poisson noise variance, averaged). Then
//   Ecker FEV                 -> S1 / (S1 + mean_i(mu_i / R_i))   (S1 with ddof 1; = S/(S + N/R) for equal R)
//   test correlation, perfect  -> sqrt(S / (S + N/R))              (correlation ceiling = sqrt of the FEV above)
//   single-trial FEV (Lurz)    -> S / (S + N)
//   single-trial corr, perfect -> sqrt(S / (S + N))
//   jackknife oracle           -> S / sqrt((S + N) (S + N/(R - 1)))   (equal R)
//   FEVE of p = m + alpha (mu - m), m the mean rate -> 1 - (1 - alpha)^2   (MSE = N + (1 - alpha)^2 S)
struct Population {
  int64_t n_images = 0, n_neurons = 0, n_trials = 0;
  std::vector<double> rates;        // [I, N]
  std::vector<int64_t> repeats;     // [I]
  std::vector<int64_t> image_ids;   // [T]
  std::vector<int64_t> image_of;    // [T] image index
  std::vector<float> responses;     // [T, N]
  std::vector<double> signal_var;   // [N] S, ddof 0
  std::vector<double> signal_var1;  // [N] S, ddof 1
  std::vector<double> mean_rate;    // [N] N
  std::vector<double> noise_of_mean;  // [N] mean_i(mu_i / R_i)

  std::vector<float> predict(double alpha) const {  // m + alpha (mu - m) on every trial
    std::vector<float> p(responses.size());
    for (int64_t t = 0; t < n_trials; ++t)
      for (int64_t n = 0; n < n_neurons; ++n) {
        const double mu = rates[image_of[t] * n_neurons + n];
        p[t * n_neurons + n] = static_cast<float>(mean_rate[n] + alpha * (mu - mean_rate[n]));
      }
    return p;
  }
};

Population simulate(int64_t n_images, int64_t n_neurons, const std::vector<int64_t>& repeats, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> log_base(std::log(0.5), std::log(3.0)), gain(0.4, 0.9);
  std::normal_distribution<double> normal;
  Population pop;
  pop.n_images = n_images;
  pop.n_neurons = n_neurons;
  pop.repeats = repeats;
  std::vector<double> a(n_neurons), b(n_neurons);
  for (int64_t n = 0; n < n_neurons; ++n) {
    a[n] = log_base(rng);
    b[n] = gain(rng);
  }
  pop.rates.resize(n_images * n_neurons);
  for (int64_t i = 0; i < n_images; ++i)
    for (int64_t n = 0; n < n_neurons; ++n) pop.rates[i * n_neurons + n] = std::exp(a[n] + b[n] * normal(rng));
  // Sessions interleave images (repeat r of every image, then repeat r + 1), with ids unrelated to order.
  const int64_t max_r = *std::max_element(repeats.begin(), repeats.end());
  for (int64_t r = 0; r < max_r; ++r)
    for (int64_t i = 0; i < n_images; ++i) {
      if (r >= repeats[i]) continue;
      pop.image_ids.push_back(1000 + 7 * ((i * 37) % n_images));
      pop.image_of.push_back(i);
      for (int64_t n = 0; n < n_neurons; ++n)
        pop.responses.push_back(static_cast<float>(std::poisson_distribution<int>(pop.rates[i * n_neurons + n])(rng)));
    }
  pop.n_trials = static_cast<int64_t>(pop.image_of.size());
  pop.signal_var.assign(n_neurons, 0.0);
  pop.signal_var1.assign(n_neurons, 0.0);
  pop.mean_rate.assign(n_neurons, 0.0);
  pop.noise_of_mean.assign(n_neurons, 0.0);
  for (int64_t n = 0; n < n_neurons; ++n) {
    double s = 0.0, ss = 0.0, noise = 0.0;
    for (int64_t i = 0; i < n_images; ++i) s += pop.rates[i * n_neurons + n];
    const double mean = s / n_images;
    for (int64_t i = 0; i < n_images; ++i) {
      const double mu = pop.rates[i * n_neurons + n];
      ss += (mu - mean) * (mu - mean);
      noise += mu / static_cast<double>(repeats[i]);
    }
    pop.mean_rate[n] = mean;
    pop.signal_var[n] = ss / n_images;
    pop.signal_var1[n] = ss / (n_images - 1);
    pop.noise_of_mean[n] = noise / n_images;
  }
  return pop;
}

// The estimators are ratios of sums over I images, unbiased only to O(1/I): for a ratio A/B the leading bias is
// about (E[A]/E[B]) * var(B)/E[B]^2 with var(B)/E[B]^2 ~ 2/(I - 1) for a variance over I images, and Fisher's
// bias of a correlation, rho (1 - rho^2) / (2 I), is smaller still. So across neurons the mean of
// (estimate - analytic) must lie within 4 standard errors of sampling noise plus this 2/(I - 1) bias bound.
// At I = 300 that is ~0.012, well below the error of a wrong ddof (e.g. ddof 0 within images moves the Ecker
// FEV by ~(1 - FEV)/R ~ 0.05 here) or of using single-trial instead of mean variances.
void expect_recovers(const std::string& name, const std::vector<double>& estimate, const std::vector<double>& analytic,
                     int64_t n_images) {
  ASSERT_EQ(estimate.size(), analytic.size()) << name;
  const double count = static_cast<double>(estimate.size());
  double mean_diff = 0.0, mean_est = 0.0, mean_an = 0.0;
  for (size_t k = 0; k < estimate.size(); ++k) {
    mean_diff += (estimate[k] - analytic[k]) / count;
    mean_est += estimate[k] / count;
    mean_an += analytic[k] / count;
  }
  double var_diff = 0.0;
  for (size_t k = 0; k < estimate.size(); ++k) {
    const double d = estimate[k] - analytic[k] - mean_diff;
    var_diff += d * d / (count - 1.0);
  }
  const double standard_error = std::sqrt(var_diff / count);
  const double tolerance = 4.0 * standard_error + 2.0 / static_cast<double>(n_images - 1);
  EXPECT_LE(std::abs(mean_diff), tolerance)
      << name << ": mean estimate " << mean_est << ", mean analytic " << mean_an << ", standard error "
      << standard_error;
}

std::vector<double> sqrt_of(const std::vector<double>& v) {
  std::vector<double> s(v.size());
  for (size_t k = 0; k < v.size(); ++k) s[k] = std::sqrt(std::max(0.0, v[k]));
  return s;
}

}  // namespace

TEST(Metrics, SimulatedPopulationRecoversCeilingAndFev) {
  const int64_t n_images = 300, n_neurons = 300, r = 5;
  const Population pop = simulate(n_images, n_neurons, std::vector<int64_t>(n_images, r), 20240917);
  const auto y = as_matrix(pop.responses, pop.n_trials, n_neurons);
  const std::vector<float> perfect = pop.predict(1.0), shrunk = pop.predict(0.5);
  const m::EvaluationMetrics e = m::evaluate(as_matrix(perfect, pop.n_trials, n_neurons), y,
                                             iota_rows(pop.n_trials), pop.image_ids);
  EXPECT_EQ(e.n_images, n_images);
  EXPECT_EQ(e.min_repeats, r);

  std::vector<double> fev_mean(n_neurons), fev_trial(n_neurons), oracle(n_neurons), ones(n_neurons, 1.0),
      three_quarters(n_neurons, 0.75);
  for (int64_t n = 0; n < n_neurons; ++n) {
    const double s = pop.signal_var[n], noise = pop.mean_rate[n];
    fev_mean[n] = pop.signal_var1[n] / (pop.signal_var1[n] + pop.noise_of_mean[n]);
    fev_trial[n] = s / (s + noise);
    oracle[n] = s / std::sqrt((s + noise) * (s + noise / (r - 1)));
  }
  expect_recovers("Ecker FEV", e.fev_per_neuron, fev_mean, n_images);
  expect_recovers("sqrt(FEV) upper bound", sqrt_of(e.fev_per_neuron), sqrt_of(fev_mean), n_images);
  expect_recovers("test correlation of the true rates", e.test_correlation_per_neuron, sqrt_of(fev_mean), n_images);
  expect_recovers("single-trial FEV", e.fev_single_trial_per_neuron, fev_trial, n_images);
  expect_recovers("single-trial correlation of the true rates", e.single_trial_correlation_per_neuron,
                  sqrt_of(fev_trial), n_images);
  expect_recovers("jackknife oracle", e.oracle_per_neuron, oracle, n_images);
  expect_recovers("FEVE of the true rates", e.feve_per_neuron, ones, n_images);

  // Fraction oracle: the slope through the origin of the analytic single-trial correlations against the
  // analytic oracles; its standard error is the residual SD over sqrt(sum o^2).
  const std::vector<double> corr_an = sqrt_of(fev_trial);
  const double slope_an = m::fraction_oracle(corr_an, oracle);
  double residual_ss = 0.0, oracle_ss = 0.0;
  for (int64_t n = 0; n < n_neurons; ++n) {
    const double d = e.single_trial_correlation_per_neuron[n] - slope_an * e.oracle_per_neuron[n];
    residual_ss += d * d;
    oracle_ss += e.oracle_per_neuron[n] * e.oracle_per_neuron[n];
  }
  const double slope_se = std::sqrt(residual_ss / (n_neurons - 1) / oracle_ss);
  EXPECT_NEAR(e.fraction_oracle, slope_an, 4.0 * slope_se + 2.0 / (n_images - 1));
  EXPECT_GT(e.fraction_oracle, 1.0);  // a perfect model beats the noisy leave-one-out oracle

  // A model that halves the stimulus-driven modulation keeps its correlations but explains 3/4 of the
  // explainable variance.
  const m::EvaluationMetrics half = m::evaluate(as_matrix(shrunk, pop.n_trials, n_neurons), y,
                                                iota_rows(pop.n_trials), pop.image_ids);
  expect_recovers("FEVE of the half-gain model", half.feve_per_neuron, three_quarters, n_images);
  for (int64_t n = 0; n < n_neurons; ++n)
    ASSERT_NEAR(half.test_correlation_per_neuron[n], e.test_correlation_per_neuron[n], 1e-5);
}

TEST(Metrics, SimulatedPopulationWithUnequalRepeats) {
  // 2 to 10 repeats per image: the Ecker FEV weighs each image's noise by its own 1/R_i.
  const int64_t n_images = 300, n_neurons = 300;
  std::vector<int64_t> repeats(n_images);
  for (int64_t i = 0; i < n_images; ++i) repeats[i] = 2 + (i * 7) % 9;
  const Population pop = simulate(n_images, n_neurons, repeats, 77);
  const std::vector<float> perfect = pop.predict(1.0);
  const m::EvaluationMetrics e = m::evaluate(as_matrix(perfect, pop.n_trials, n_neurons),
                                             as_matrix(pop.responses, pop.n_trials, n_neurons),
                                             iota_rows(pop.n_trials), pop.image_ids);
  EXPECT_EQ(e.min_repeats, 2);
  EXPECT_EQ(e.max_repeats, 10);
  std::vector<double> fev_mean(n_neurons), fev_trial(n_neurons), ones(n_neurons, 1.0);
  for (int64_t n = 0; n < n_neurons; ++n) {
    fev_mean[n] = pop.signal_var1[n] / (pop.signal_var1[n] + pop.noise_of_mean[n]);
    fev_trial[n] = pop.signal_var[n] / (pop.signal_var[n] + pop.mean_rate[n]);
  }
  expect_recovers("Ecker FEV", e.fev_per_neuron, fev_mean, n_images);
  expect_recovers("test correlation of the true rates", e.test_correlation_per_neuron, sqrt_of(fev_mean), n_images);
  expect_recovers("single-trial FEV", e.fev_single_trial_per_neuron, fev_trial, n_images);
  expect_recovers("single-trial correlation of the true rates", e.single_trial_correlation_per_neuron,
                  sqrt_of(fev_trial), n_images);
  expect_recovers("FEVE of the true rates", e.feve_per_neuron, ones, n_images);
}
