// Dataset queries, reader dispatch, validation shared by all readers, and the reference preprocessing:
//   images    x' = (x - mean_train) / sd_train                  (scalars over all training pixels, ddof 0)
//   responses r' = max(r, 0) / sd_n                             (sd_n per neuron over training trials, ddof 0)
// with sd_n < mean_n(sd_n) / 100 replaced by 1 (reference-models.md §3.3).
#include "data/dataset.hpp"

#include "core/error.hpp"
#include "data/dataset_detail.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

namespace v1sysid {

namespace fs = std::filesystem;

const char* tier_name(Tier t) {
  switch (t) {
    case Tier::train: return "train";
    case Tier::validation: return "validation";
    case Tier::test: return "test";
    case Tier::final_test: return "final_test";
  }
  return "?";
}

Tier parse_tier(const std::string& name, const std::string& where) {
  for (int i = 0; i < kNumTiers; ++i) {
    auto t = static_cast<Tier>(i);
    if (name == tier_name(t)) return t;
  }
  throw DataError("unknown tier '" + name + "'", where, "tiers must be one of train, validation, test, final_test");
}

std::vector<int64_t> Dataset::indices(Tier t) const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (tiers[i] == t) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

int64_t Dataset::count(Tier t) const { return static_cast<int64_t>(std::count(tiers.begin(), tiers.end(), t)); }

namespace {
std::map<int64_t, int64_t> repeats_per_image(const Dataset& d, Tier t) {
  std::map<int64_t, int64_t> repeats;
  for (size_t i = 0; i < d.tiers.size() && i < d.image_ids.size(); ++i) {
    if (d.tiers[i] == t) ++repeats[d.image_ids[i]];
  }
  return repeats;
}
}  // namespace

int64_t Dataset::unique_images(Tier t) const { return static_cast<int64_t>(repeats_per_image(*this, t).size()); }

int64_t Dataset::min_repeats(Tier t) const {
  auto repeats = repeats_per_image(*this, t);
  int64_t m = 0;
  for (const auto& [id, n] : repeats) m = (m == 0) ? n : std::min(m, n);
  return m;
}

std::string data_key_from_path(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string name = fs::path(p).filename().string();
  const std::string prefix = "static";
  if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) {
    std::string key = name.substr(prefix.size());
    key = key.substr(0, key.find('.'));
    for (size_t pos; (pos = key.find("preproc")) != std::string::npos;) key.erase(pos, 7);
    if (!key.empty()) return key;
  }
  return fs::path(name).stem().string();
}

namespace {
bool starts_with_zip_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  return f.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' &&
         ((magic[2] == 3 && magic[3] == 4) || (magic[2] == 5 && magic[3] == 6));
}
}  // namespace

Dataset load_dataset(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw IoError("dataset not found", path,
                  "check the path; v1sysid reads StaticImageSet .h5 files, FileTree folders and zipped FileTrees");
  }
  if (fs::is_directory(path, ec)) return read_file_tree(path);
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".zip" || starts_with_zip_magic(path)) return read_file_tree(path);
  return read_static_image_set(path);
}

void validate_dataset(const Dataset& d) {
  auto row = [](const char* field) {
    return [field](int64_t i) { return std::string(field) + "[" + std::to_string(i) + "]"; };
  };
  data_detail::validate(d, row("images"), row("responses"), "tiers", "gt/");
}

// ---- shared reader pieces -----------------------------------------------------------------------------

namespace data_detail {

void check_lengths(const std::string& where, const std::vector<NamedLength>& fields) {
  for (size_t i = 1; i < fields.size(); ++i) {
    if (fields[i].length != fields[0].length) {
      throw DataError("length mismatch: '" + fields[i].field + "' has " + std::to_string(fields[i].length) +
                          " trials but '" + fields[0].field + "' has " + std::to_string(fields[0].length),
                      where, "every per-trial field must have one entry per trial, in the same order");
    }
  }
}

std::vector<Tier> parse_tiers(const std::vector<std::string>& names, const std::string& where,
                              const std::string& field) {
  std::vector<Tier> out(names.size());
  std::unordered_map<std::string, Tier> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = seen.find(names[i]);
    if (it == seen.end()) {
      try {
        it = seen.emplace(names[i], parse_tier(names[i], where)).first;
      } catch (const DataError&) {
        throw DataError("unknown tier name '" + names[i] + "' in '" + field + "' at trial " + std::to_string(i),
                        where, "tiers must be one of train, validation, test, final_test");
      }
    }
    out[i] = it->second;
  }
  return out;
}

const std::vector<IdField>& image_id_fields() {
  static const std::vector<IdField> fields = {
      {"image_id", "image_class"},
      {"colorframeprojector_image_id", "colorframeprojector_image_class"},
      {"frame_image_id", "frame_image_class"},
  };
  return fields;
}

std::vector<int64_t> ids_from_strings(const std::vector<std::string>& values) {
  std::unordered_map<std::string, int64_t> dense;
  std::vector<int64_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = dense.emplace(values[i], static_cast<int64_t>(dense.size())).first->second;
  }
  return out;
}

std::vector<int64_t> ids_with_class(const std::vector<int64_t>& ids, const std::vector<std::string>& classes) {
  std::set<std::string> distinct(classes.begin(), classes.end());
  if (distinct.size() <= 1 || ids.empty()) return ids;
  std::map<std::string, int64_t> class_index;
  for (const auto& c : distinct) class_index.emplace(c, static_cast<int64_t>(class_index.size()));
  const int64_t stride = *std::max_element(ids.begin(), ids.end()) + 1;
  std::vector<int64_t> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out[i] = ids[i] + class_index[classes[i]] * stride;
  return out;
}

std::vector<int64_t> ids_from_pixels(const std::vector<float>& images, int64_t n_trials, int64_t pixels) {
  // FNV-1a over the raw bytes finds candidates; equal hashes are confirmed bit by bit.
  std::unordered_map<uint64_t, std::vector<std::pair<int64_t, int64_t>>> by_hash;  // hash -> (first row, id)
  std::vector<int64_t> out(static_cast<size_t>(n_trials));
  int64_t next_id = 0;
  const size_t bytes = static_cast<size_t>(pixels) * sizeof(float);
  for (int64_t i = 0; i < n_trials; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(images.data() + i * pixels);
    uint64_t h = 1469598103934665603ULL;
    for (size_t k = 0; k < bytes; ++k) h = (h ^ p[k]) * 1099511628211ULL;
    auto& candidates = by_hash[h];
    int64_t id = -1;
    for (const auto& [row, cid] : candidates) {
      if (std::memcmp(images.data() + row * pixels, p, bytes) == 0) {
        id = cid;
        break;
      }
    }
    if (id < 0) {
      id = next_id++;
      candidates.emplace_back(i, id);
    }
    out[static_cast<size_t>(i)] = id;
  }
  return out;
}

void fill_test_image_ids(GroundTruth& gt, int64_t rows, const Dataset& d, const std::string& where,
                         const std::string& field) {
  std::set<int64_t> test_ids;
  for (size_t i = 0; i < d.tiers.size(); ++i) {
    if (d.tiers[i] == Tier::test) test_ids.insert(d.image_ids[i]);
  }
  if (static_cast<int64_t>(test_ids.size()) != rows) {
    throw DataError("'" + field + "' has " + std::to_string(rows) + " rows but the test tier has " +
                        std::to_string(test_ids.size()) + " distinct images, and the file does not say which "
                        "row is which image",
                    where, "store the image id of each row next to it as gt/test_image_ids");
  }
  gt.test_image_ids.assign(test_ids.begin(), test_ids.end());
}

void validate(const Dataset& d, const FieldOfTrial& image_field, const FieldOfTrial& response_field,
              const std::string& tiers_field, const std::string& gt_prefix) {
  const std::string& where = d.source;
  const int64_t n = d.n_trials;
  const int64_t pixels = d.height * d.width;
  auto size_error = [&](const std::string& field, size_t have, int64_t want) {
    throw DataError("'" + field + "' holds " + std::to_string(have) + " values, expected " + std::to_string(want),
                    where, "every per-trial field needs one entry per trial and every per-neuron field one per "
                           "neuron");
  };
  if (d.height <= 0 || d.width <= 0) {
    throw DataError("images have an empty shape (" + std::to_string(d.height) + " x " + std::to_string(d.width) + ")",
                    where, "store images as (N, 1, H, W) with H, W > 0");
  }
  if (d.n_neurons <= 0) {
    throw DataError("'responses' has no neurons (0 columns)", where, "store responses as (N, n_neurons)");
  }
  if (static_cast<int64_t>(d.images.size()) != n * pixels) size_error("images", d.images.size(), n * pixels);
  if (static_cast<int64_t>(d.responses.size()) != n * d.n_neurons) {
    size_error("responses", d.responses.size(), n * d.n_neurons);
  }
  if (static_cast<int64_t>(d.tiers.size()) != n) size_error(tiers_field, d.tiers.size(), n);
  if (static_cast<int64_t>(d.image_ids.size()) != n) size_error("image ids", d.image_ids.size(), n);
  if (static_cast<int64_t>(d.unit_ids.size()) != d.n_neurons) size_error("unit_ids", d.unit_ids.size(), d.n_neurons);
  if (!d.cortical_coordinates.empty() &&
      static_cast<int64_t>(d.cortical_coordinates.size()) != 3 * d.n_neurons) {
    size_error("cell_motor_coordinates", d.cortical_coordinates.size(), 3 * d.n_neurons);
  }

  for (Tier t : {Tier::train, Tier::validation, Tier::test}) {
    if (d.count(t) == 0) {
      throw DataError("required tier '" + std::string(tier_name(t)) + "' has no trials in '" + tiers_field + "'",
                      where, "mark some trials as '" + std::string(tier_name(t)) +
                                 "' (v1sysid trains on train, stops early on validation and reports on test)");
    }
  }

  for (int64_t i = 0; i < n; ++i) {
    const float* img = d.images.data() + i * pixels;
    for (int64_t k = 0; k < pixels; ++k) {
      if (!std::isfinite(img[k])) {
        throw DataError("NaN or Inf in '" + image_field(i) + "' (first bad trial: " + std::to_string(i) +
                            ", pixel " + std::to_string(k) + ")",
                        where, "replace or drop the bad trials before fitting");
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* r = d.responses.data() + i * d.n_neurons;
    for (int64_t k = 0; k < d.n_neurons; ++k) {
      if (!std::isfinite(r[k])) {
        throw DataError("NaN or Inf in '" + response_field(i) + "' (first bad trial: " + std::to_string(i) +
                            ", neuron " + std::to_string(k) + ")",
                        where, "replace or drop the bad trials before fitting");
      }
    }
  }

  if (d.ground_truth) {
    const GroundTruth& gt = *d.ground_truth;
    auto per_neuron = [&](const std::string& name, size_t size, int64_t per) {
      if (size != 0 && static_cast<int64_t>(size) != per * d.n_neurons) size_error(gt_prefix + name, size, per * d.n_neurons);
    };
    per_neuron("cell_type", gt.cell_type.size(), 1);
    per_neuron("orientation", gt.orientation.size(), 1);
    per_neuron("position", gt.position.size(), 2);
    per_neuron("ceiling_correlation", gt.ceiling_correlation.size(), 1);
    per_neuron("fev", gt.fev.size(), 1);
    const auto k = static_cast<int64_t>(gt.test_image_ids.size());
    if (static_cast<int64_t>(gt.test_rates.size()) != k * d.n_neurons) {
      size_error(gt_prefix + "test_rates", gt.test_rates.size(), k * d.n_neurons);
    }
    auto repeats = repeats_per_image(d, Tier::test);
    for (int64_t id : gt.test_image_ids) {
      if (repeats.count(id) == 0) {
        throw DataError("'" + gt_prefix + "test_image_ids' names image " + std::to_string(id) +
                            ", which is not shown in the test tier",
                        where, "store the ids of the test images whose noise-free rates are in test_rates");
      }
    }
  }
}

}  // namespace data_detail

// ---- preprocessing ------------------------------------------------------------------------------------

Preprocessing compute_preprocessing(const Dataset& d) {
  const auto train = d.indices(Tier::train);
  if (train.empty()) {
    throw DataError("the training tier is empty, so there are no statistics to normalise with", d.source,
                    "mark some trials as 'train'");
  }
  const int64_t pixels = d.height * d.width;
  const int64_t n = d.n_neurons;
  Preprocessing p;

  // Two passes in double: the mean first, then the squared deviations (no cancellation on 0..255 data).
  double sum = 0;
  for (int64_t i : train) {
    const float* img = d.images.data() + i * pixels;
    for (int64_t k = 0; k < pixels; ++k) sum += img[k];
  }
  const double count = static_cast<double>(train.size()) * static_cast<double>(pixels);
  p.image_mean = sum / count;
  double ss = 0;
  for (int64_t i : train) {
    const float* img = d.images.data() + i * pixels;
    for (int64_t k = 0; k < pixels; ++k) ss += (img[k] - p.image_mean) * (img[k] - p.image_mean);
  }
  p.image_std = std::sqrt(ss / count);
  if (!(p.image_std > 0)) {
    throw DataError("the training images are all the same constant value, so they cannot be z-scored", d.source,
                    "check that 'images' holds the stimuli");
  }

  // Per-neuron SD (ddof 0, as np.std) of the responses clipped at zero.
  std::vector<double> mean(static_cast<size_t>(n), 0.0), var(static_cast<size_t>(n), 0.0);
  for (int64_t i : train) {
    const float* r = d.responses.data() + i * n;
    for (int64_t k = 0; k < n; ++k) mean[static_cast<size_t>(k)] += std::max(r[k], 0.0f);
  }
  for (auto& m : mean) m /= static_cast<double>(train.size());
  for (int64_t i : train) {
    const float* r = d.responses.data() + i * n;
    for (int64_t k = 0; k < n; ++k) {
      const double dev = std::max(r[k], 0.0f) - mean[static_cast<size_t>(k)];
      var[static_cast<size_t>(k)] += dev * dev;
    }
  }
  std::vector<double> sd(static_cast<size_t>(n));
  double mean_sd = 0;
  for (int64_t k = 0; k < n; ++k) {
    sd[static_cast<size_t>(k)] = std::sqrt(var[static_cast<size_t>(k)] / static_cast<double>(train.size()));
    mean_sd += sd[static_cast<size_t>(k)];
  }
  mean_sd /= static_cast<double>(n);
  // The reference (cnn-sys-ident mesonet Dataset) replaces an SD below 1 % of the mean SD by 1, so nearly
  // silent neurons are left unscaled instead of blown up. neuralpredictors' NeuroNormalizer instead divides
  // such neurons by the threshold itself (precision = 1 / (0.01 * mean SD)); we follow the reference.
  // An SD of exactly zero is also replaced (only reachable when every neuron is silent, mean SD = 0).
  p.response_std.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const double s = sd[static_cast<size_t>(k)];
    p.response_std[static_cast<size_t>(k)] = (s < mean_sd / 100.0 || s <= 0.0) ? 1.0f : static_cast<float>(s);
  }
  return p;
}

void apply_preprocessing(const Preprocessing& p, const Dataset& d, std::vector<float>& images,
                         std::vector<float>& responses) {
  const int64_t n = d.n_neurons;
  if (static_cast<int64_t>(p.response_std.size()) != n) {
    throw ShapeError("preprocessing statistics are for " + std::to_string(p.response_std.size()) +
                         " neurons but the dataset has " + std::to_string(n),
                     d.source, "compute the statistics on this dataset (compute_preprocessing)");
  }
  images.resize(d.images.size());
  const double inv_std = 1.0 / p.image_std;
  for (size_t k = 0; k < d.images.size(); ++k) {
    images[k] = static_cast<float>((d.images[k] - p.image_mean) * inv_std);
  }
  responses.resize(d.responses.size());
  for (int64_t i = 0; i < d.n_trials; ++i) {
    for (int64_t k = 0; k < n; ++k) {
      const size_t at = static_cast<size_t>(i * n + k);
      responses[at] = std::max(d.responses[at], 0.0f) / p.response_std[static_cast<size_t>(k)];
    }
  }
}

void downsample_images(Dataset& d, int factor) {
  if (factor < 1) {
    throw ConfigError("downsampling factor " + std::to_string(factor) + " is not a positive integer", d.source,
                      "use 1 (no downsampling) or an integer that divides the image height and width");
  }
  if (factor == 1) return;
  if (d.height % factor != 0 || d.width % factor != 0) {
    throw ConfigError("downsampling factor " + std::to_string(factor) + " does not divide the image size " +
                          std::to_string(d.height) + " x " + std::to_string(d.width),
                      d.source, "choose a factor that divides both (e.g. 4 for 144 x 256 -> 36 x 64)");
  }
  const int64_t h = d.height / factor, w = d.width / factor;
  const double inv_area = 1.0 / (static_cast<double>(factor) * factor);
  std::vector<float> out(static_cast<size_t>(d.n_trials * h * w));
  for (int64_t i = 0; i < d.n_trials; ++i) {
    const float* src = d.images.data() + i * d.height * d.width;
    float* dst = out.data() + i * h * w;
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        double s = 0;
        for (int64_t dy = 0; dy < factor; ++dy) {
          const float* line = src + (y * factor + dy) * d.width + x * factor;
          for (int64_t dx = 0; dx < factor; ++dx) s += line[dx];
        }
        dst[y * w + x] = static_cast<float>(s * inv_area);
      }
    }
  }
  d.images = std::move(out);
  d.height = h;
  d.width = w;
  // Positions are in pixel-centre coordinates (x = 0 is the centre of the first pixel); output pixel j
  // covers input pixels j*f .. j*f+f-1, whose centre is j*f + (f-1)/2.
  if (d.ground_truth) {
    for (auto& v : d.ground_truth->position) v = static_cast<float>((v + 0.5) / factor - 0.5);
  }
}

}  // namespace v1sysid
