// Reader for neuralpredictors' StaticImageSet HDF5 files (cajal/neuro_data layout, data-formats.md §B.1):
//   images (N,1,H,W) or (N,H,W), responses (N,n), tiers (N,) byte strings (fixed-length as h5py writes numpy
//   'S' arrays, or variable-length str), item_info/<image id field> (N,), neurons/unit_ids (n,),
//   neurons/cell_motor_coordinates (n,3), statistics/<images|responses>/all/{mean,std}, and the simulator's
//   gt/ group. Everything is read into memory once; the file is opened read-only.
#include "core/error.hpp"
#include "data/dataset.hpp"
#include "data/dataset_detail.hpp"
#include "io/h5.hpp"

#include <numeric>

namespace v1sysid {

namespace {

const char* kLayoutFix =
    "a StaticImageSet file needs images (N, 1, H, W), responses (N, n_neurons) and tiers (N,) byte strings";

std::string shape_text(const h5::Shape& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

void require_dataset(const h5::File& f, const std::string& field) {
  if (!f.exists(field)) throw DataError("missing field '" + field + "'", f.path(), kLayoutFix);
  if (f.is_group(field)) {
    throw DataError("'" + field + "' is a group, not an array", f.path(), kLayoutFix);
  }
}

// Per-trial ids: strings become dense integers, numbers are kept.
std::vector<int64_t> read_ids(const h5::File& f, const std::string& field, int64_t n_trials) {
  h5::Shape shape = f.shape(field);
  if (shape.size() != 1) {
    throw DataError("'" + field + "' has shape " + shape_text(shape) + ", expected (N,)", f.path(),
                    "store one image id per trial");
  }
  data_detail::check_lengths(f.path(), {{"images", n_trials}, {field, static_cast<int64_t>(shape[0])}});
  if (f.is_string(field)) return data_detail::ids_from_strings(f.read_strings(field));
  return f.read<int64_t>(field);
}

void read_image_ids(const h5::File& f, Dataset& d) {
  for (const auto& field : data_detail::image_id_fields()) {
    const std::string id = std::string("item_info/") + field.id;
    if (!f.exists(id)) continue;
    d.image_ids = read_ids(f, id, d.n_trials);
    const std::string cls = std::string("item_info/") + field.image_class;
    if (f.exists(cls) && f.is_string(cls) && f.shape(cls) == h5::Shape{static_cast<hsize_t>(d.n_trials)}) {
      d.image_ids = data_detail::ids_with_class(d.image_ids, f.read_strings(cls));
    }
    d.image_id_source = id;
    return;
  }
  // Older layouts: cnn-sys-ident's image_ids, then neuro_data's condition hashes (one per image).
  for (const char* field : {"image_ids", "condition_hashes", "item_info/condition_hash"}) {
    if (f.exists(field) && !f.is_group(field)) {
      d.image_ids = read_ids(f, field, d.n_trials);
      d.image_id_source = field;
      return;
    }
  }
  d.image_ids = data_detail::ids_from_pixels(d.images, d.n_trials, d.height * d.width);
  d.image_id_source = "pixel hash";
}

// The "all" subset when present (neuro_data writes "all" and "stimulus.Frame"), else the first one.
std::string statistics_subset(const h5::File& f, const std::string& group) {
  if (!f.is_group(group)) return "";
  if (f.is_group(group + "/all")) return group + "/all";
  for (const auto& name : f.list(group)) {
    if (f.is_group(group + "/" + name)) return group + "/" + name;
  }
  return "";
}

void read_statistics(const h5::File& f, Dataset& d) {
  if (!f.is_group("statistics")) return;
  StoredStatistics s;
  const std::string images = statistics_subset(f, "statistics/images");
  for (auto [name, target] : {std::pair<const char*, std::optional<double>*>{"mean", &s.image_mean},
                              std::pair<const char*, std::optional<double>*>{"std", &s.image_std}}) {
    const std::string field = images + "/" + name;
    if (!images.empty() && f.exists(field)) {
      auto v = f.read<double>(field);
      if (v.size() != 1) {
        throw DataError("'" + field + "' holds " + std::to_string(v.size()) + " values, expected one scalar",
                        f.path(), "store image statistics as 0-d arrays (grey images have one channel)");
      }
      *target = v[0];
    }
  }
  const std::string responses = statistics_subset(f, "statistics/responses");
  for (auto [name, target] : {std::pair<const char*, std::vector<float>*>{"mean", &s.response_mean},
                              std::pair<const char*, std::vector<float>*>{"std", &s.response_std}}) {
    const std::string field = responses + "/" + name;
    if (!responses.empty() && f.exists(field)) {
      *target = f.read<float>(field);
      if (static_cast<int64_t>(target->size()) != d.n_neurons) {
        throw DataError("'" + field + "' holds " + std::to_string(target->size()) + " values for " +
                            std::to_string(d.n_neurons) + " neurons",
                        f.path(), "store one statistic per response column");
      }
    }
  }
  d.stored_statistics = s;
}

void read_ground_truth(const h5::File& f, Dataset& d) {
  if (!f.is_group("gt")) return;
  GroundTruth gt;
  if (f.exists("gt/cell_type")) gt.cell_type = f.read_strings("gt/cell_type");
  if (f.exists("gt/orientation")) gt.orientation = f.read<float>("gt/orientation");
  if (f.exists("gt/position")) {
    h5::Shape s;
    gt.position = f.read<float>("gt/position", &s);
    if (s.size() != 2 || s[1] != 2) {
      throw DataError("'gt/position' has shape " + shape_text(s) + ", expected (n_neurons, 2)", f.path(),
                      "store (x, y) per neuron");
    }
  }
  if (f.exists("gt/ceiling_correlation")) gt.ceiling_correlation = f.read<float>("gt/ceiling_correlation");
  if (f.exists("gt/fev")) gt.fev = f.read<float>("gt/fev");
  if (f.exists("gt/test_rates")) {
    h5::Shape s;
    gt.test_rates = f.read<float>("gt/test_rates", &s);
    if (s.size() != 2) {
      throw DataError("'gt/test_rates' has shape " + shape_text(s) + ", expected (n_test_images, n_neurons)",
                      f.path(), "store one row of noise-free rates per test image");
    }
    if (f.exists("gt/test_image_ids")) {
      gt.test_image_ids = f.read<int64_t>("gt/test_image_ids");
    } else {
      data_detail::fill_test_image_ids(gt, static_cast<int64_t>(s[0]), d, f.path(), "gt/test_rates");
    }
  }
  d.ground_truth = std::move(gt);
}

}  // namespace

Dataset read_static_image_set(const std::string& h5_path) {
  h5::File f = h5::File::open(h5_path);
  Dataset d;
  d.source = h5_path;
  d.format = "hdf5";
  d.data_key = data_key_from_path(h5_path);

  require_dataset(f, "images");
  require_dataset(f, "responses");
  require_dataset(f, "tiers");
  const h5::Shape image_shape = f.shape("images");
  if (image_shape.size() == 4 && image_shape[1] != 1) {
    throw DataError("'images' has " + std::to_string(image_shape[1]) + " channels (shape " + shape_text(image_shape) +
                        "); v1sysid models grey images",
                    h5_path, "convert the stimuli to grey, shape (N, 1, H, W)");
  }
  if (image_shape.size() != 4 && image_shape.size() != 3) {
    throw DataError("'images' has shape " + shape_text(image_shape) + ", expected (N, 1, H, W) or (N, H, W)",
                    h5_path, "store one grey image per trial");
  }
  const h5::Shape response_shape = f.shape("responses");
  if (response_shape.size() != 2) {
    throw DataError("'responses' has shape " + shape_text(response_shape) + ", expected (N, n_neurons)", h5_path,
                    "store one row of responses per trial");
  }
  const h5::Shape tier_shape = f.shape("tiers");
  if (tier_shape.size() != 1) {
    throw DataError("'tiers' has shape " + shape_text(tier_shape) + ", expected (N,)", h5_path,
                    "store one tier name per trial");
  }
  data_detail::check_lengths(h5_path, {{"images", static_cast<int64_t>(image_shape[0])},
                                       {"responses", static_cast<int64_t>(response_shape[0])},
                                       {"tiers", static_cast<int64_t>(tier_shape[0])}});
  d.n_trials = static_cast<int64_t>(image_shape[0]);
  d.height = static_cast<int64_t>(image_shape[image_shape.size() - 2]);
  d.width = static_cast<int64_t>(image_shape[image_shape.size() - 1]);
  d.n_neurons = static_cast<int64_t>(response_shape[1]);

  d.images = f.read<float>("images");
  d.responses = f.read<float>("responses");
  d.tiers = data_detail::parse_tiers(f.read_strings("tiers"), h5_path, "tiers");
  read_image_ids(f, d);

  if (f.exists("neurons/unit_ids")) {
    d.unit_ids = f.read<int64_t>("neurons/unit_ids");
    if (static_cast<int64_t>(d.unit_ids.size()) != d.n_neurons) {
      throw DataError("'neurons/unit_ids' has " + std::to_string(d.unit_ids.size()) + " entries but 'responses' has " +
                          std::to_string(d.n_neurons) + " columns",
                      h5_path, "store one unit id per response column, in column order");
    }
  } else {
    d.unit_ids.resize(static_cast<size_t>(d.n_neurons));
    std::iota(d.unit_ids.begin(), d.unit_ids.end(), int64_t{0});
  }
  if (f.exists("neurons/cell_motor_coordinates")) {
    h5::Shape s;
    d.cortical_coordinates = f.read<float>("neurons/cell_motor_coordinates", &s);
    if (s.size() != 2 || s[1] != 3 || static_cast<int64_t>(s[0]) != d.n_neurons) {
      throw DataError("'neurons/cell_motor_coordinates' has shape " + shape_text(s) + ", expected (" +
                          std::to_string(d.n_neurons) + ", 3)",
                      h5_path, "store (x, y, z) in micrometres per neuron, in response column order");
    }
  }
  read_statistics(f, d);
  read_ground_truth(f, d);

  auto row = [](const char* field) {
    return [field](int64_t i) { return std::string(field) + "[" + std::to_string(i) + "]"; };
  };
  data_detail::validate(d, row("images"), row("responses"), "tiers", "gt/");
  return d;
}

}  // namespace v1sysid
