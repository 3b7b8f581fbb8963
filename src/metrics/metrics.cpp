// Evaluation metrics on repeated test images; definitions and conventions in metrics.hpp.
// Every loop runs over rows (trials) outermost and neurons innermost, so the row-major [T, N] inputs are read
// contiguously, and sums are two-pass (means first, then centred products) in double.
#include "metrics/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace v1sysid::metrics {

namespace {

constexpr double kMinVar = kMinStd * kMinStd;

void require(bool ok, const std::string& what, const std::string& where, const std::string& fix) {
  if (!ok) throw DataError(what, where, fix);
}

template <class T>
void require_same_shape(ConstMatrix<T> a, ConstMatrix<T> b, const char* a_name, const char* b_name,
                        const std::string& where) {
  require(a.rows == b.rows && a.cols == b.cols,
          std::string(a_name) + " is [" + std::to_string(a.rows) + ", " + std::to_string(a.cols) + "] but " +
              b_name + " is [" + std::to_string(b.rows) + ", " + std::to_string(b.cols) + "]",
          where, "pass matrices with one row per trial and one column per neuron");
}

void require_rows_in(const RepeatGroups& groups, int64_t rows, const std::string& where) {
  for (const auto& image_rows : groups.rows)
    for (int64_t r : image_rows)
      require(r >= 0 && r < rows,
              "trial row " + std::to_string(r) + " is outside the " + std::to_string(rows) + " rows of the matrix",
              where, "group the rows of the same matrix that is passed in");
}

// Pearson r from centred sums, with Ecker's rule: 0 when either SD (ddof 0) is <= kMinStd.
double pearson_from_sums(double sxy, double sxx, double syy, int64_t n) {
  if (n < 1) return 0.0;
  const double dn = static_cast<double>(n);
  if (sxx / dn <= kMinVar || syy / dn <= kMinVar) return 0.0;
  return sxy / std::sqrt(sxx * syy);
}

// Per-column Pearson r over the trial pairs (x(row), y(row)) produced by `for_each_row(f)`, which calls
// f(const X* x_row, const Y* y_row) once per pair with pointers to N contiguous values.
template <class ForEachRow>
std::vector<double> column_pearson(int64_t n_cols, ForEachRow for_each_row) {
  std::vector<double> mx(n_cols, 0.0), my(n_cols, 0.0);
  int64_t n = 0;
  for_each_row([&](const auto* x, const auto* y) {
    for (int64_t c = 0; c < n_cols; ++c) {
      mx[c] += x[c];
      my[c] += y[c];
    }
    ++n;
  });
  if (n == 0) return std::vector<double>(n_cols, 0.0);
  for (int64_t c = 0; c < n_cols; ++c) {
    mx[c] /= static_cast<double>(n);
    my[c] /= static_cast<double>(n);
  }
  std::vector<double> sxy(n_cols, 0.0), sxx(n_cols, 0.0), syy(n_cols, 0.0);
  for_each_row([&](const auto* x, const auto* y) {
    for (int64_t c = 0; c < n_cols; ++c) {
      const double dx = x[c] - mx[c];
      const double dy = y[c] - my[c];
      sxy[c] += dx * dy;
      sxx[c] += dx * dx;
      syy[c] += dy * dy;
    }
  });
  std::vector<double> r(n_cols);
  for (int64_t c = 0; c < n_cols; ++c) r[c] = pearson_from_sums(sxy[c], sxx[c], syy[c], n);
  return r;
}

std::vector<int64_t> repeated_images(const RepeatGroups& groups) {
  std::vector<int64_t> images;
  for (int64_t i = 0; i < groups.n_images(); ++i)
    if (groups.rows[i].size() >= 2) images.push_back(i);
  return images;
}

// `tier` names the evaluated tier in the message ("" when the caller does not know it).
void require_repeats(const RepeatGroups& groups, const std::string& where, const std::string& tier = "") {
  const std::string which = tier.empty() ? "the evaluated tier" : "the " + tier + " tier";
  require(groups.n_repeated_images() > 0,
          "no image of the " + std::to_string(groups.n_trials()) + " trials (" + std::to_string(groups.n_images()) +
              " images) of " + which + " is shown more than once",
          where,
          "oracle, FEV and FEVE need images shown at least twice; evaluate a tier with repeated images (usually "
          "test) or check the image ids of " +
              which + " (item_info/frame_image_id)");
}

}  // namespace

// ---- ConstMatrix ----------------------------------------------------------------------------------------

template <class T>
ConstMatrix<T>::ConstMatrix(const T* data_, int64_t rows_, int64_t cols_) : data(data_), rows(rows_), cols(cols_) {
  require(rows_ >= 0 && cols_ >= 0 && (data_ != nullptr || rows_ * cols_ == 0),
          "a matrix of shape [" + std::to_string(rows_) + ", " + std::to_string(cols_) + "] has no data",
          "metrics::ConstMatrix", "pass a pointer to rows * cols values");
}

template <class T>
ConstMatrix<T>::ConstMatrix(const std::vector<T>& values, int64_t rows_, int64_t cols_, const std::string& name)
    : data(values.data()), rows(rows_), cols(cols_) {
  require(rows_ >= 0 && cols_ >= 0 && static_cast<int64_t>(values.size()) == rows_ * cols_,
          name + " holds " + std::to_string(values.size()) + " values, not " + std::to_string(rows_) + " x " +
              std::to_string(cols_),
          "metrics::ConstMatrix", "pass a row-major [trials, neurons] array of exactly that size");
}

template struct ConstMatrix<float>;
template struct ConstMatrix<double>;

// ---- grouping ------------------------------------------------------------------------------------------

int64_t RepeatGroups::n_trials() const {
  int64_t n = 0;
  for (const auto& r : rows) n += static_cast<int64_t>(r.size());
  return n;
}

int64_t RepeatGroups::min_repeats() const {
  if (rows.empty()) return 0;
  size_t m = rows.front().size();
  for (const auto& r : rows) m = std::min(m, r.size());
  return static_cast<int64_t>(m);
}

int64_t RepeatGroups::max_repeats() const {
  size_t m = 0;
  for (const auto& r : rows) m = std::max(m, r.size());
  return static_cast<int64_t>(m);
}

int64_t RepeatGroups::n_repeated_images() const {
  int64_t n = 0;
  for (const auto& r : rows) n += r.size() >= 2 ? 1 : 0;
  return n;
}

RepeatGroups group_repeats(const std::vector<int64_t>& trial_rows, const std::vector<int64_t>& image_ids) {
  const std::string where = "metrics::group_repeats";
  require(!trial_rows.empty(), "no trials to group", where, "pass the row indices of a non-empty tier");
  const int64_t n_rows = static_cast<int64_t>(image_ids.size());
  std::vector<char> seen(static_cast<size_t>(n_rows), 0);
  std::map<int64_t, std::vector<int64_t>> by_id;  // ordered: images come out sorted by id
  for (int64_t row : trial_rows) {
    require(row >= 0 && row < n_rows,
            "trial row " + std::to_string(row) + " is outside the " + std::to_string(n_rows) +
                " rows that have an image id",
            where, "pass row indices into the same dataset as the image ids");
    require(!seen[row], "trial row " + std::to_string(row) + " is listed twice", where,
            "pass each trial of the tier once");
    seen[row] = 1;
    by_id[image_ids[row]].push_back(row);
  }
  RepeatGroups groups;
  groups.image_ids.reserve(by_id.size());
  groups.rows.reserve(by_id.size());
  for (auto& [id, rows] : by_id) {
    groups.image_ids.push_back(id);
    groups.rows.push_back(std::move(rows));
  }
  return groups;
}

// ---- correlations --------------------------------------------------------------------------------------

template <class T>
std::vector<double> pearson_per_neuron(ConstMatrix<T> a, ConstMatrix<T> b) {
  require_same_shape(a, b, "the first matrix", "the second", "metrics::pearson_per_neuron");
  return column_pearson(a.cols, [&](auto&& f) {
    for (int64_t r = 0; r < a.rows; ++r) f(a.data + r * a.cols, b.data + r * b.cols);
  });
}

template std::vector<double> pearson_per_neuron(ConstMatrix<float>, ConstMatrix<float>);
template std::vector<double> pearson_per_neuron(ConstMatrix<double>, ConstMatrix<double>);

template <class T>
std::vector<double> repeat_averages(ConstMatrix<T> values, const RepeatGroups& groups) {
  require_rows_in(groups, values.rows, "metrics::repeat_averages");
  const int64_t n = values.cols;
  std::vector<double> means(static_cast<size_t>(groups.n_images() * n), 0.0);
  for (int64_t i = 0; i < groups.n_images(); ++i) {
    double* m = means.data() + i * n;
    for (int64_t row : groups.rows[i])
      for (int64_t c = 0; c < n; ++c) m[c] += values(row, c);
    const double count = static_cast<double>(groups.rows[i].size());
    for (int64_t c = 0; c < n; ++c) m[c] /= count;
  }
  return means;
}

template std::vector<double> repeat_averages(ConstMatrix<float>, const RepeatGroups&);
template std::vector<double> repeat_averages(ConstMatrix<double>, const RepeatGroups&);

std::vector<double> test_correlation_per_neuron(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                                                const RepeatGroups& groups) {
  require_same_shape(predictions, responses, "predictions", "responses", "metrics::test_correlation_per_neuron");
  const std::vector<double> predicted = repeat_averages(predictions, groups);
  const std::vector<double> averaged = repeat_averages(responses, groups);
  return pearson_per_neuron(ConstMatrix<double>(predicted, groups.n_images(), predictions.cols),
                            ConstMatrix<double>(averaged, groups.n_images(), responses.cols));
}

std::vector<double> single_trial_correlation_per_neuron(ConstMatrix<float> predictions,
                                                        ConstMatrix<float> responses, const RepeatGroups& groups) {
  const std::string where = "metrics::single_trial_correlation_per_neuron";
  require_same_shape(predictions, responses, "predictions", "responses", where);
  require_rows_in(groups, responses.rows, where);
  const int64_t n = responses.cols;
  return column_pearson(n, [&](auto&& f) {
    for (const auto& image_rows : groups.rows)
      for (int64_t row : image_rows) f(predictions.data + row * n, responses.data + row * n);
  });
}

std::vector<double> oracle_correlation_per_neuron(ConstMatrix<float> responses, const RepeatGroups& groups) {
  const std::string where = "metrics::oracle_correlation_per_neuron";
  require_rows_in(groups, responses.rows, where);
  require_repeats(groups, where);
  const int64_t n = responses.cols;
  const std::vector<int64_t> images = repeated_images(groups);
  // Per-image sums, so that each leave-one-out mean is (sum - y) / (R - 1) without a [T, N] buffer.
  std::vector<double> sums(images.size() * static_cast<size_t>(n), 0.0);
  for (size_t k = 0; k < images.size(); ++k)
    for (int64_t row : groups.rows[images[k]])
      for (int64_t c = 0; c < n; ++c) sums[k * n + c] += responses(row, c);
  std::vector<double> loo(static_cast<size_t>(n));
  return column_pearson(n, [&](auto&& f) {
    for (size_t k = 0; k < images.size(); ++k) {
      const auto& image_rows = groups.rows[images[k]];
      const double others = static_cast<double>(image_rows.size() - 1);
      for (int64_t row : image_rows) {
        const float* y = responses.data + row * n;
        for (int64_t c = 0; c < n; ++c) loo[c] = (sums[k * n + c] - y[c]) / others;
        f(loo.data(), y);
      }
    }
  });
}

// ---- variances, FEV, FEVE ------------------------------------------------------------------------------

VarianceDecomposition variance_decomposition(ConstMatrix<float> responses, const RepeatGroups& groups) {
  const std::string where = "metrics::variance_decomposition";
  require_rows_in(groups, responses.rows, where);
  require_repeats(groups, where);
  const int64_t n = responses.cols;
  const std::vector<int64_t> images = repeated_images(groups);

  VarianceDecomposition v;
  v.n_images = static_cast<int64_t>(images.size());
  v.mean_var.assign(n, 0.0);
  v.mean_noise_var.assign(n, 0.0);
  v.trial_var.assign(n, 0.0);
  v.trial_noise_var.assign(n, 0.0);

  std::vector<double> image_means(images.size() * static_cast<size_t>(n), 0.0);
  std::vector<double> grand_trial_mean(n, 0.0), grand_image_mean(n, 0.0);
  for (size_t k = 0; k < images.size(); ++k) {
    double* m = image_means.data() + k * n;
    for (int64_t row : groups.rows[images[k]])
      for (int64_t c = 0; c < n; ++c) m[c] += responses(row, c);
    v.n_trials += static_cast<int64_t>(groups.rows[images[k]].size());
    for (int64_t c = 0; c < n; ++c) {
      grand_trial_mean[c] += m[c];
      m[c] /= static_cast<double>(groups.rows[images[k]].size());
      grand_image_mean[c] += m[c];
    }
  }
  for (int64_t c = 0; c < n; ++c) {
    grand_trial_mean[c] /= static_cast<double>(v.n_trials);
    grand_image_mean[c] /= static_cast<double>(v.n_images);
  }

  std::vector<double> within(n);
  for (size_t k = 0; k < images.size(); ++k) {
    const auto& image_rows = groups.rows[images[k]];
    const double r = static_cast<double>(image_rows.size());
    const double* m = image_means.data() + k * n;
    std::fill(within.begin(), within.end(), 0.0);
    for (int64_t row : image_rows)
      for (int64_t c = 0; c < n; ++c) {
        const double y = responses(row, c);
        within[c] += (y - m[c]) * (y - m[c]);
        v.trial_var[c] += (y - grand_trial_mean[c]) * (y - grand_trial_mean[c]);
      }
    for (int64_t c = 0; c < n; ++c) {
      const double var_rep = within[c] / (r - 1.0);  // ddof 1
      v.trial_noise_var[c] += var_rep;
      v.mean_noise_var[c] += var_rep / r;
      v.mean_var[c] += (m[c] - grand_image_mean[c]) * (m[c] - grand_image_mean[c]);
    }
  }
  const double images_d = static_cast<double>(v.n_images);
  for (int64_t c = 0; c < n; ++c) {
    v.trial_noise_var[c] /= images_d;
    v.mean_noise_var[c] /= images_d;
    // ddof 1; with a single repeated image the variance of the means is undefined, reported as 0 so that
    // FEV becomes 0 (see fev_per_neuron) rather than NaN.
    v.mean_var[c] = v.n_images > 1 ? v.mean_var[c] / (images_d - 1.0) : 0.0;
    v.trial_var[c] /= static_cast<double>(v.n_trials - 1);  // n_trials >= 2 since an image has >= 2 repeats
  }
  return v;
}

std::vector<double> fev_per_neuron(const VarianceDecomposition& v) {
  std::vector<double> fev(v.mean_var.size(), 0.0);
  for (size_t c = 0; c < fev.size(); ++c) {
    if (v.mean_var[c] <= kMinVar) continue;
    fev[c] = std::max(0.0, (v.mean_var[c] - v.mean_noise_var[c]) / v.mean_var[c]);
  }
  return fev;
}

std::vector<double> fev_single_trial_per_neuron(const VarianceDecomposition& v) {
  std::vector<double> fev(v.trial_var.size(), 0.0);
  for (size_t c = 0; c < fev.size(); ++c) {
    if (v.trial_var[c] <= kMinVar) continue;
    fev[c] = (v.trial_var[c] - v.trial_noise_var[c]) / v.trial_var[c];
  }
  return fev;
}

std::vector<double> feve_per_neuron(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                                    const RepeatGroups& groups, const VarianceDecomposition& v) {
  const std::string where = "metrics::feve_per_neuron";
  require_same_shape(predictions, responses, "predictions", "responses", where);
  require_rows_in(groups, responses.rows, where);
  require_repeats(groups, where);
  const int64_t n = responses.cols;
  require(static_cast<int64_t>(v.trial_var.size()) == n,
          "the variance decomposition has " + std::to_string(v.trial_var.size()) + " neurons, the responses " +
              std::to_string(n),
          where, "compute it with variance_decomposition() from the same responses and groups");
  std::vector<double> squared_error(n, 0.0);
  int64_t n_trials = 0;
  for (int64_t i : repeated_images(groups))
    for (int64_t row : groups.rows[i]) {
      for (int64_t c = 0; c < n; ++c) {
        const double e = static_cast<double>(responses(row, c)) - predictions(row, c);
        squared_error[c] += e * e;
      }
      ++n_trials;
    }
  std::vector<double> feve(n, 0.0);
  for (int64_t c = 0; c < n; ++c) {
    if (!has_explainable_variance(v, c)) continue;
    const double mse = squared_error[c] / static_cast<double>(n_trials);
    feve[c] = 1.0 - (mse - v.trial_noise_var[c]) / (v.trial_var[c] - v.trial_noise_var[c]);
  }
  return feve;
}

bool has_explainable_variance(const VarianceDecomposition& v, int64_t c) {
  const auto k = static_cast<size_t>(c);
  return v.trial_var[k] > kMinVar && v.trial_var[k] - v.trial_noise_var[k] > 1e-12 * v.trial_var[k];
}

double correlation_upper_bound(const std::vector<double>& fev) {
  if (fev.empty()) return 0.0;
  double s = 0.0;
  for (double f : fev) s += std::sqrt(std::max(0.0, f));
  return s / static_cast<double>(fev.size());
}

double fraction_oracle(const std::vector<double>& correlations, const std::vector<double>& oracles) {
  require(correlations.size() == oracles.size(),
          std::to_string(correlations.size()) + " correlations but " + std::to_string(oracles.size()) + " oracles",
          "metrics::fraction_oracle", "pass one correlation and one oracle per neuron");
  double so = 0.0, sc = 0.0;
  for (size_t k = 0; k < oracles.size(); ++k) {
    sc += oracles[k] * correlations[k];
    so += oracles[k] * oracles[k];
  }
  return so > 0.0 ? sc / so : 0.0;
}

double mean(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

// ---- entry points --------------------------------------------------------------------------------------

EvaluationMetrics evaluate(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                           const std::vector<int64_t>& indices, const std::vector<int64_t>& image_ids,
                           const EvaluationOptions& options) {
  const std::string where = "metrics::evaluate";
  const int64_t n = responses.cols;
  const int64_t t = static_cast<int64_t>(indices.size());
  require(t > 0, "the evaluated tier has no trials", where, "evaluate a tier with trials (usually test)");
  require(n > 0, "the responses have no neurons", where, "pass responses of shape [trials, neurons]");
  require(predictions.cols == n,
          "predictions have " + std::to_string(predictions.cols) + " neurons but responses " + std::to_string(n),
          where, "predict with a model whose readout matches this dataset");
  require(predictions.rows == t,
          "predictions have " + std::to_string(predictions.rows) + " rows but the tier has " + std::to_string(t) +
              " trials",
          where, "pass one prediction row per trial of the tier, in the order of its indices");
  require(static_cast<int64_t>(image_ids.size()) == responses.rows,
          std::to_string(image_ids.size()) + " image ids for " + std::to_string(responses.rows) + " response rows",
          where, "pass one image id per trial of the dataset");

  // Gather the tier's responses so that rows of predictions and responses coincide below.
  std::vector<float> tier_responses(static_cast<size_t>(t * n));
  std::vector<int64_t> tier_image_ids(static_cast<size_t>(t));
  for (int64_t k = 0; k < t; ++k) {
    const int64_t row = indices[k];
    require(row >= 0 && row < responses.rows,
            "tier index " + std::to_string(row) + " is outside the " + std::to_string(responses.rows) +
                " response rows",
            where, "pass row indices of the same dataset (Dataset::indices)");
    tier_image_ids[k] = image_ids[row];
    for (int64_t c = 0; c < n; ++c) {
      const float y = responses(row, c);
      require(std::isfinite(y),
              "the response of trial " + std::to_string(row) + ", neuron " + std::to_string(c) + " is not finite",
              where, "remove or repair non-finite responses before evaluating");
      tier_responses[k * n + c] = y;
      if (!std::isfinite(predictions(k, c)))
        throw DivergedError("the prediction for trial " + std::to_string(row) + ", neuron " + std::to_string(c) +
                                " is not finite",
                            where, "the model diverged; lower the learning rate or check the checkpoint");
    }
  }
  {
    std::vector<int64_t> sorted = indices;
    std::sort(sorted.begin(), sorted.end());
    const auto twice = std::adjacent_find(sorted.begin(), sorted.end());
    require(twice == sorted.end(),
            "tier index " + (twice == sorted.end() ? std::string() : std::to_string(*twice)) + " is listed twice",
            where, "pass each trial of the tier once");
  }
  // Group positions 0..T-1 of the gathered tier, so that groups index predictions and responses alike.
  std::vector<int64_t> local_rows(static_cast<size_t>(t));
  std::iota(local_rows.begin(), local_rows.end(), int64_t{0});
  const RepeatGroups groups = group_repeats(local_rows, tier_image_ids);
  require_repeats(groups, where, options.tier);

  const ConstMatrix<float> y(tier_responses, t, n, "tier responses");
  EvaluationMetrics m;
  m.n_trials = t;
  m.n_images = groups.n_images();
  m.n_repeated_images = groups.n_repeated_images();
  m.min_repeats = groups.min_repeats();
  m.max_repeats = groups.max_repeats();

  m.test_correlation_per_neuron = test_correlation_per_neuron(predictions, y, groups);
  m.single_trial_correlation_per_neuron = single_trial_correlation_per_neuron(predictions, y, groups);
  m.oracle_per_neuron = oracle_correlation_per_neuron(y, groups);
  const VarianceDecomposition v = variance_decomposition(y, groups);
  m.fev_per_neuron = fev_per_neuron(v);
  m.fev_single_trial_per_neuron = fev_single_trial_per_neuron(v);
  m.feve_per_neuron = feve_per_neuron(predictions, y, groups, v);

  m.test_correlation = mean(m.test_correlation_per_neuron);
  m.single_trial_correlation = mean(m.single_trial_correlation_per_neuron);
  m.oracle = mean(m.oracle_per_neuron);
  m.fraction_oracle = fraction_oracle(m.single_trial_correlation_per_neuron, m.oracle_per_neuron);
  m.fev = mean(m.fev_per_neuron);
  m.correlation_upper_bound = correlation_upper_bound(m.fev_per_neuron);
  m.fev_single_trial = mean(m.fev_single_trial_per_neuron);
  // FEVE of a neuron without explainable variance divides by a number <= 0 (or one that is only noise): such
  // neurons are left out of the mean and counted instead (Cadena et al. 2019).
  double feve_sum = 0.0;
  for (int64_t c = 0; c < n; ++c) {
    if (has_explainable_variance(v, c))
      feve_sum += m.feve_per_neuron[c];
    else
      ++m.feve_neurons_left_out;
  }
  const int64_t feve_neurons = n - m.feve_neurons_left_out;
  m.feve = feve_neurons > 0 ? feve_sum / static_cast<double>(feve_neurons) : 0.0;
  m.fev_threshold = options.fev_threshold;
  double above = 0.0;
  for (int64_t c = 0; c < n; ++c)
    if (m.fev_single_trial_per_neuron[c] > options.fev_threshold) {
      above += m.feve_per_neuron[c];
      ++m.n_neurons_above_threshold;
    }
  m.feve_above_threshold =
      m.n_neurons_above_threshold > 0 ? above / static_cast<double>(m.n_neurons_above_threshold) : 0.0;
  return m;
}

EvaluationMetrics evaluate(ConstMatrix<float> predictions, ConstMatrix<float> responses,
                           const std::vector<Tier>& tiers, Tier tier, const std::vector<int64_t>& image_ids,
                           const EvaluationOptions& options) {
  require(static_cast<int64_t>(tiers.size()) == responses.rows,
          std::to_string(tiers.size()) + " tiers for " + std::to_string(responses.rows) + " response rows",
          "metrics::evaluate", "pass one tier per trial of the dataset");
  std::vector<int64_t> indices;
  for (int64_t row = 0; row < static_cast<int64_t>(tiers.size()); ++row)
    if (tiers[row] == tier) indices.push_back(row);
  EvaluationOptions named = options;
  named.tier = tier_name(tier);
  return evaluate(predictions, responses, indices, image_ids, named);
}

}  // namespace v1sysid::metrics
