// Neuron subsets of a dataset (NeuronSelection in data/dataset.hpp): parsing `--neurons SPEC`, cutting every
// per-neuron field down to the subset, and re-applying a subset recorded in a checkpoint.
#include "core/error.hpp"
#include "data/dataset.hpp"

#include <cctype>

namespace v1sysid {

namespace {

// A non-negative decimal integer; -1 for anything else (a sign, spaces, other characters, too many digits).
int64_t parse_index(const std::string& text) {
  if (text.empty() || text.size() > 12) return -1;
  int64_t v = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
    v = 10 * v + (c - '0');
  }
  return v;
}

// Per-neuron vectors with `width` entries per neuron ([n, width] row-major); empty stays empty.
template <class T>
void keep_rows(std::vector<T>& values, int64_t width, const std::vector<int64_t>& indices) {
  if (values.empty()) return;
  std::vector<T> out;
  out.reserve(indices.size() * static_cast<size_t>(width));
  for (int64_t n : indices)
    for (int64_t k = 0; k < width; ++k) out.push_back(values[static_cast<size_t>(n * width + k)]);
  values = std::move(out);
}

}  // namespace

std::vector<float> neuron_columns(const std::vector<float>& values, int64_t cols, const std::vector<int64_t>& indices) {
  if (values.empty() || cols == 0) return values;
  const int64_t rows = static_cast<int64_t>(values.size()) / cols;
  std::vector<float> out;
  out.reserve(static_cast<size_t>(rows) * indices.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c : indices) out.push_back(values[static_cast<size_t>(r * cols + c)]);
  return out;
}

NeuronSelection parse_neuron_selection(const std::string& spec, const Dataset& d, const std::string& option) {
  const int64_t n = d.n_neurons;
  const std::string forms = "pass A:B (0 <= A < B <= " + std::to_string(n) + ", half-open, e.g. 0:" +
                            std::to_string(n / 2) + "), even or odd";
  const std::string where = "the command line (" + d.source + " has " + std::to_string(n) + " neurons)";
  NeuronSelection s;
  s.spec = spec;
  s.dataset_neurons = n;
  if (spec == "even" || spec == "odd") {
    for (int64_t k = spec == "even" ? 0 : 1; k < n; k += 2) s.indices.push_back(k);
  } else {
    const auto colon = spec.find(':');
    if (colon == std::string::npos || spec.find(':', colon + 1) != std::string::npos)
      throw ConfigError(option + " '" + spec + "' is not a neuron range", where, forms);
    const std::string a_text = spec.substr(0, colon), b_text = spec.substr(colon + 1);
    const int64_t a = a_text.empty() ? 0 : parse_index(a_text);
    const int64_t b = b_text.empty() ? n : parse_index(b_text);
    if (a < 0 || b < 0)
      throw ConfigError(option + " '" + spec + "': A and B must be non-negative integers", where, forms);
    if (b > n)
      throw ConfigError(option + " '" + spec + "' ends after the last neuron (" + std::to_string(n) + ")", where, forms);
    if (a >= b) throw ConfigError(option + " '" + spec + "' selects no neuron (A >= B)", where, forms);
    for (int64_t k = a; k < b; ++k) s.indices.push_back(k);
  }
  if (s.indices.empty()) throw ConfigError(option + " '" + spec + "' selects no neuron", where, forms);
  for (int64_t k : s.indices) s.unit_ids.push_back(d.unit_ids.empty() ? k : d.unit_ids[static_cast<size_t>(k)]);
  return s;
}

void keep_neurons(Dataset& d, const std::vector<int64_t>& indices) {
  for (int64_t k : indices)
    if (k < 0 || k >= d.n_neurons)
      throw ShapeError("neuron index " + std::to_string(k) + " is outside 0.." + std::to_string(d.n_neurons - 1),
                       d.source, "select neurons of this dataset");
  const int64_t n = d.n_neurons;
  d.responses = neuron_columns(d.responses, n, indices);
  keep_rows(d.unit_ids, 1, indices);
  keep_rows(d.cortical_coordinates, 3, indices);
  if (d.stored_statistics) {
    keep_rows(d.stored_statistics->response_mean, 1, indices);
    keep_rows(d.stored_statistics->response_std, 1, indices);
  }
  if (d.ground_truth) {
    auto& gt = *d.ground_truth;
    keep_rows(gt.cell_type, 1, indices);
    keep_rows(gt.orientation, 1, indices);
    keep_rows(gt.position, 2, indices);
    gt.test_rates = neuron_columns(gt.test_rates, n, indices);
    keep_rows(gt.ceiling_correlation, 1, indices);
    keep_rows(gt.fev, 1, indices);
  }
  d.n_neurons = static_cast<int64_t>(indices.size());
}

void apply_neuron_selection(Dataset& d, const NeuronSelection& s, const std::string& origin) {
  if (s.all()) return;
  const std::string fix = "use the dataset the model was trained on, or a model trained on all neurons of this one";
  if (d.n_neurons != s.dataset_neurons)
    throw ShapeError("the model was trained on neurons " + s.spec + " of a dataset with " +
                         std::to_string(s.dataset_neurons) + " neurons, " + d.source + " has " +
                         std::to_string(d.n_neurons),
                     origin, fix);
  for (size_t k = 0; k < s.indices.size() && !d.unit_ids.empty() && k < s.unit_ids.size(); ++k) {
    const int64_t got = d.unit_ids[static_cast<size_t>(s.indices[k])];
    if (got != s.unit_ids[k])
      throw ShapeError("neuron " + std::to_string(s.indices[k]) + " of " + d.source + " has unit_id " +
                           std::to_string(got) + ", the model's neuron " + std::to_string(k) + " was unit_id " +
                           std::to_string(s.unit_ids[k]),
                       origin, fix);
  }
  keep_neurons(d, s.indices);
}

}  // namespace v1sysid
