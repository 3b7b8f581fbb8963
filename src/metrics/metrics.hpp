// Evaluation metrics of the field on the repeated test images (reference-models.md §4): per-neuron Pearson
// correlation with the repeat-averaged response (Ecker 2019), single-trial correlation, jackknife oracle and
// fraction oracle (Lurz 2021), fraction of explainable variance (FEV) and of explainable variance explained
// (FEVE). Host code: inputs are row-major float matrices [trials, neurons], every sum is accumulated in double.
//
// Conventions shared by every function below:
// - A "neuron" is a column. Correlations are taken down a column, across trials or images.
// - Pearson r is 0 when either side has SD (ddof 0) <= kMinStd, as Ecker's Trainer.compute_test_corr. Lurz's
//   `corr` instead adds eps = 1e-8 to each SD (ddof 0) and maps NaN to 0; above the threshold the two differ
//   by at most 2e-3 relative (2 * 1e-8 / 1e-5), and by ~1e-8 relative at response SDs near 1, so one rule
//   serves both.
// - A neuron whose responses vary by less than kMinStd (variance <= kMinStd^2) scores 0 on FEV and FEVE instead
//   of the reference's 0/0 = NaN.
// - Noise-based quantities (oracle, FEV, FEVE) need within-image variances, so they use only the images shown
//   at least twice (Lurz get_repeats(min_repeats=2)); images shown once still count for the correlations.
//   When no image is repeated they throw DataError instead of returning NaN.
#pragma once

#include "core/error.hpp"
#include "data/dataset.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid::metrics {

constexpr double kMinStd = 1e-5;

// Read-only view of a row-major [rows, cols] matrix (C++17 stand-in for a span with two extents). The vector
// constructor checks that the vector holds exactly rows * cols values and throws DataError naming `name`.
template <class T>
struct ConstMatrix {
  const T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  ConstMatrix() = default;
  ConstMatrix(const T* data_, int64_t rows_, int64_t cols_);
  ConstMatrix(const std::vector<T>& values, int64_t rows_, int64_t cols_, const std::string& name = "matrix");
  const T& operator()(int64_t r, int64_t c) const { return data[r * cols + c]; }
};

// Trials grouped by image: the repeats of each unique image id, images sorted by id ascending.
struct RepeatGroups {
  std::vector<int64_t> image_ids;          // [I] unique ids, ascending
  std::vector<std::vector<int64_t>> rows;  // [I][R_i] trial rows of image i, in the order they were given

  int64_t n_images() const { return static_cast<int64_t>(image_ids.size()); }
  int64_t n_trials() const;
  int64_t min_repeats() const;  // 0 when empty
  int64_t max_repeats() const;  // 0 when empty
  int64_t n_repeated_images() const;  // images with at least 2 trials
};

// Groups `trial_rows` (e.g. Dataset::indices(Tier::test)) by `image_ids[row]` (one id per row of the dataset).
// Throws DataError when trial_rows is empty, a row is outside [0, image_ids.size()) or a row occurs twice.
RepeatGroups group_repeats(const std::vector<int64_t>& trial_rows, const std::vector<int64_t>& image_ids);

// Per-column Pearson r of two equally shaped matrices [T, N] -> [N]; 0 where either SD <= kMinStd.
// Throws DataError when the shapes differ.
template <class T>
std::vector<double> pearson_per_neuron(ConstMatrix<T> a, ConstMatrix<T> b);

// Mean over repeats of each image: values [rows, N] indexed by groups.rows -> [I, N] row-major.
// Used both for repeat-averaged responses and for per-image predictions (the mean of the predictions of an
// image's trials, which is that prediction itself for a deterministic model).
template <class T>
std::vector<double> repeat_averages(ConstMatrix<T> values, const RepeatGroups& groups);

// In every function below `predictions` and `responses` are [rows, N] with the same row indexing, and only
// the rows listed in `groups` are used.

// Test correlation (Ecker): r(per-image prediction, repeat-averaged response) across the I images -> [N].
std::vector<double> test_correlation_per_neuron(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                                                const RepeatGroups& groups);

// Single-trial correlation (Lurz get_correlations): r(prediction of the trial, response of the trial) across
// all trials of the groups -> [N].
std::vector<double> single_trial_correlation_per_neuron(ConstMatrix<float> predictions,
                                                        ConstMatrix<float> responses, const RepeatGroups& groups);

// Jackknife oracle (Lurz compute_oracle_corr): for each trial of an image with R_i >= 2 repeats the mean of
// the other R_i - 1 repeats, (sum_i - y) / (R_i - 1), correlated with the trial across all those trials -> [N].
std::vector<double> oracle_correlation_per_neuron(ConstMatrix<float> responses, const RepeatGroups& groups);

// Variances behind FEV and FEVE, per neuron, over the images with R_i >= 2 (I' of them, T' trials):
struct VarianceDecomposition {
  // Ecker oracle.ipynb, the variance of the repeat-averaged response:
  std::vector<double> mean_var;        // [N] var over the I' images of the repeat means, ddof 1 (total_var)
  std::vector<double> mean_noise_var;  // [N] mean over images of var_rep(ddof 1) / R_i (obs_var)
  // Lurz compute_FEV, the single-trial variance:
  std::vector<double> trial_var;        // [N] var over all T' trials, ddof 1 (TotalVar)
  std::vector<double> trial_noise_var;  // [N] unweighted mean over images of var_rep(ddof 1) (NoiseVar)
  int64_t n_images = 0;                 // I'
  int64_t n_trials = 0;                 // T'
};
// Throws DataError when no image has 2 or more repeats.
VarianceDecomposition variance_decomposition(ConstMatrix<float> responses, const RepeatGroups& groups);

// FEV of the repeat-averaged response (Ecker oracle.ipynb) -> [N]: (mean_var - mean_noise_var) / mean_var,
// clipped at >= 0; 0 when mean_var <= kMinStd^2 (constant means, or a single repeated image).
// Unequal repeat counts: each image contributes its own noise variance of the mean, var_rep / R_i, and all
// images weigh equally in both terms; then E[mean_var] = S + mean_i(noise_i / R_i) = S + E[mean_noise_var]
// for signal variance S, so the estimate stays unbiased in numerator and denominator.
std::vector<double> fev_per_neuron(const VarianceDecomposition& v);

// Single-trial FEV (Lurz compute_FEV's FEV) -> [N]: (trial_var - trial_noise_var) / trial_var, not clipped
// (as the reference); 0 when trial_var <= kMinStd^2. With unequal repeat counts trial_var weighs trials
// equally and trial_noise_var weighs images equally, exactly as the reference does.
std::vector<double> fev_single_trial_per_neuron(const VarianceDecomposition& v);

// FEVE (Lurz compute_FEV) -> [N]: 1 - (MSE - trial_noise_var) / (trial_var - trial_noise_var), where MSE is
// the mean over the T' single trials of (response - prediction of that trial)^2. Not clipped (as the
// reference, so it can exceed 1 or be very negative for neurons with little explainable variance); 0 for a
// neuron without explainable variance (see has_explainable_variance), whose ratio has no meaning.
std::vector<double> feve_per_neuron(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                                    const RepeatGroups& groups, const VarianceDecomposition& v);

// Whether neuron c has explainable variance: trial_var > kMinStd^2 and trial_var - trial_noise_var >
// 1e-12 * trial_var (single-trial FEV > 1e-12). The mean FEVE is taken over these neurons only.
bool has_explainable_variance(const VarianceDecomposition& v, int64_t c);

// Mean of sqrt(FEV) (FEV clipped at >= 0): Ecker's "best possible average correlation" with the
// repeat-averaged response. 0 for an empty vector.
double correlation_upper_bound(const std::vector<double>& fev);

// Fraction oracle (Lurz get_fraction_oracles): least-squares slope through the origin of `correlations`
// against `oracles` across neurons, sum(o * c) / sum(o * o); 0 when all oracles are 0 (numpy lstsq's
// minimum-norm answer). Throws DataError when the lengths differ.
double fraction_oracle(const std::vector<double>& correlations, const std::vector<double>& oracles);

// Mean of a vector; 0 for an empty one.
double mean(const std::vector<double>& values);

struct EvaluationOptions {
  // feve_above_threshold averages FEVE over neurons with single-trial FEV > fev_threshold (Lurz get_FEV's
  // `threshold`). The default 0 keeps every neuron with explainable variance, as `feve` does.
  double fev_threshold = 0.0;
  std::string tier = "";  // the evaluated tier's name, for error messages (the Tier overload sets it)
};

struct EvaluationMetrics {
  // Means over neurons.
  double test_correlation = 0;          // Ecker's headline number
  double single_trial_correlation = 0;  // Lurz get_correlations
  double oracle = 0;                    // jackknife oracle
  double fraction_oracle = 0;           // slope of single-trial correlation against oracle (Lurz)
  double fev = 0;                       // Ecker FEV of the repeat-averaged response
  double correlation_upper_bound = 0;   // mean sqrt(fev): ceiling of test_correlation
  double fev_single_trial = 0;          // Lurz FEV
  double feve = 0;                      // FEVE over neurons with explainable variance (Cadena et al. 2019)
  int64_t feve_neurons_left_out = 0;    // neurons without explainable variance, not in `feve`
  double feve_above_threshold = 0;      // Lurz FEVE over neurons with fev_single_trial > fev_threshold
  double fev_threshold = 0;
  int64_t n_neurons_above_threshold = 0;

  // Test-set layout.
  int64_t n_trials = 0;
  int64_t n_images = 0;
  int64_t n_repeated_images = 0;  // images with >= 2 repeats, the ones behind oracle, FEV and FEVE
  int64_t min_repeats = 0;
  int64_t max_repeats = 0;

  // Per neuron [N].
  std::vector<double> test_correlation_per_neuron;
  std::vector<double> single_trial_correlation_per_neuron;
  std::vector<double> oracle_per_neuron;
  std::vector<double> fev_per_neuron;
  std::vector<double> fev_single_trial_per_neuron;
  std::vector<double> feve_per_neuron;
};

// All metrics of one tier. `predictions` [T, N]: row k is the model's prediction for trial indices[k];
// `responses` [n_trials, N] and `image_ids` [n_trials] cover the whole dataset (responses on the scale the
// model predicts, i.e. preprocessed); `indices` [T] are the rows of the evaluated tier.
// Throws DataError on shape mismatches, empty input, indices out of range or repeated, non-finite responses,
// or a tier without any repeated image; DivergedError when a prediction is NaN or infinite.
EvaluationMetrics evaluate(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                           const std::vector<int64_t>& indices, const std::vector<int64_t>& image_ids,
                           const EvaluationOptions& options = {});

// Same with the tier given by name: `predictions` row k belongs to the k-th trial (in file order) whose
// tiers[row] == tier, e.g. the rows of Dataset::indices(Tier::test).
EvaluationMetrics evaluate(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                           const std::vector<Tier>& tiers, Tier tier, const std::vector<int64_t>& image_ids,
                           const EvaluationOptions& options = {});

}  // namespace v1sysid::metrics
