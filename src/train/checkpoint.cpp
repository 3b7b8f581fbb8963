#include "train/checkpoint.hpp"

#include "core/error.hpp"
#include "io/h5.hpp"

#include <algorithm>
#include <cmath>

namespace v1sysid {

namespace {

constexpr const char* kKind = "v1sysid checkpoint";

h5::Shape slot_shape(const ParamSlot& s) {
  h5::Shape shape;
  for (int r = 0; r < s.rank; ++r) shape.push_back(static_cast<hsize_t>(s.extents[static_cast<size_t>(r)]));
  return shape;
}

std::vector<float> slot_values(const View1<Real>& flat, const ParamSlot& s) {
  auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), flat);
  return std::vector<float>(host.data() + s.offset, host.data() + s.offset + s.size);
}

void read_into(const h5::File& f, const std::string& name, const View1<Real>& flat, const ParamSlot& s) {
  if (!f.exists(name))
    throw ShapeError("the checkpoint has no '" + name + "'", f.path(),
                     "it was written for another model; use the checkpoint of this model");
  h5::Shape shape;
  auto values = f.read<float>(name, &shape);
  if (shape != slot_shape(s)) {
    std::string got, want;
    for (auto e : shape) got += (got.empty() ? "" : " x ") + std::to_string(e);
    for (auto e : slot_shape(s)) want += (want.empty() ? "" : " x ") + std::to_string(e);
    throw ShapeError("'" + name + "' is " + got + " but the stored config builds " + want, f.path(),
                     "the checkpoint is inconsistent or from another model version");
  }
  // Training never saves a diverged model, so a NaN or Inf here means the file was damaged after it was
  // written; say so now instead of letting the predictions blame divergence later.
  const auto bad = std::find_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  if (bad != values.end())
    throw IoError("the checkpoint is damaged: '" + name + "' holds " + std::to_string(*bad) + " at index " +
                      std::to_string(bad - values.begin()) + " (a saved model has only finite values)",
                  f.path(), "restore the file from a copy or train the model again");
  auto host = Kokkos::create_mirror_view(flat);
  Kokkos::deep_copy(host, flat);
  for (size_t i = 0; i < s.size; ++i) host(s.offset + i) = values[i];
  Kokkos::deep_copy(flat, host);
}

// One preprocessing group: image_mean, image_std, response_std and, for a model of a neuron subset,
// neuron_indices [n] (attributes spec, dataset_neurons) and neuron_unit_ids [n].
void write_preprocessing(h5::File& f, const std::string& g, const Preprocessing& p) {
  f.write_scalar<double>(g + "/image_mean", p.image_mean);
  f.write_scalar<double>(g + "/image_std", p.image_std);
  f.write(g + "/response_std", p.response_std, {static_cast<hsize_t>(p.response_std.size())});
  const auto& s = p.neurons;
  if (s.all()) return;
  f.write(g + "/neuron_indices", s.indices, {static_cast<hsize_t>(s.indices.size())});
  f.write_attribute(g + "/neuron_indices", "spec", s.spec);
  f.write_attribute(g + "/neuron_indices", "dataset_neurons", s.dataset_neurons);
  f.write(g + "/neuron_unit_ids", s.unit_ids, {static_cast<hsize_t>(s.unit_ids.size())});
}

Preprocessing read_preprocessing(const h5::File& f, const std::string& g) {
  Preprocessing p;
  p.image_mean = f.read_scalar<double>(g + "/image_mean");
  p.image_std = f.read_scalar<double>(g + "/image_std");
  p.response_std = f.read<float>(g + "/response_std");
  if (!f.exists(g + "/neuron_indices")) return p;
  auto& s = p.neurons;
  s.indices = f.read<int64_t>(g + "/neuron_indices");
  s.spec = f.read_attribute_string(g + "/neuron_indices", "spec");
  s.dataset_neurons = f.read_attribute_int(g + "/neuron_indices", "dataset_neurons");
  if (f.exists(g + "/neuron_unit_ids")) s.unit_ids = f.read<int64_t>(g + "/neuron_unit_ids");
  if (s.indices.size() != p.response_std.size() || (!s.unit_ids.empty() && s.unit_ids.size() != s.indices.size()))
    throw ShapeError(g + "/neuron_indices, neuron_unit_ids and response_std differ in length", f.path(),
                     "the checkpoint is corrupt; retrain");
  return p;
}

}  // namespace

void save_checkpoint(const std::string& path, const Model<Real>& model, const Preprocessing& preprocessing,
                     const TrainResult& training, const std::string& dataset_source, bool force, int64_t trial_id) {
  save_checkpoint(path, model, std::vector<Preprocessing>{preprocessing}, training, dataset_source, force, trial_id);
}

void save_checkpoint(const std::string& path, const Model<Real>& model,
                     const std::vector<Preprocessing>& all_preprocessing, const TrainResult& training,
                     const std::string& dataset_source, bool force, int64_t trial_id) {
  if (all_preprocessing.size() != static_cast<size_t>(model.num_readouts()))
    throw ShapeError(std::to_string(all_preprocessing.size()) + " preprocessings for " +
                         std::to_string(model.num_readouts()) + " readouts",
                     path, "pass one preprocessing per dataset");
  const Preprocessing& preprocessing = all_preprocessing.front();
  const bool multi = model.num_readouts() > 1;
  auto f = h5::File::create(path, force);
  const auto& arena = model.arena();
  f.write_attribute("/", "format_version", kCheckpointFormatVersion);
  f.write_attribute("/", "kind", std::string(kKind));
  f.write_attribute("/", "config", to_yaml(model.config()));
  f.write_attribute("/", "height", static_cast<int64_t>(model.height()));
  f.write_attribute("/", "width", static_cast<int64_t>(model.width()));
  f.write_attribute("/", "n_neurons", static_cast<int64_t>(model.n_neurons()));
  f.write_attribute("/", "dataset", dataset_source);
  if (trial_id >= 0) f.write_attribute("/", "trial_id", trial_id);

  // Parameters (and BN running statistics, which are buffer slots) and Adam state, by slot name.
  for (const auto& s : arena.slots()) {
    f.write("params/" + s.name, slot_values(arena.params(), s), slot_shape(s));
    if (!s.trainable) continue;
    f.write("adam/m/" + s.name, slot_values(arena.adam_m(), s), slot_shape(s));
    f.write("adam/v/" + s.name, slot_values(arena.adam_v(), s), slot_shape(s));
  }
  f.write_scalar<int64_t>("adam/step", arena.adam_step());

  // Training record.
  f.create_group("training");
  f.write_attribute("training", "status", training.status);
  f.write_attribute("training", "message", training.message);
  f.write_attribute("training", "best_val_loss", training.best_val_loss);
  f.write_attribute("training", "best_iteration", training.best_iteration);
  f.write_attribute("training", "iterations", training.iterations);
  f.write_attribute("training", "steps", training.steps);
  f.write_attribute("training", "wall_seconds", training.wall_seconds);
  f.write_attribute("training", "final_learning_rate", training.final_learning_rate);
  f.write_attribute("training", "restored_best", static_cast<int64_t>(training.restored_best));
  std::vector<double> curve;
  for (const auto& p : training.curve) {
    for (double x : {double(p.iteration), double(p.step), p.train_loss, p.val_loss, p.learning_rate}) curve.push_back(x);
  }
  f.write("training/val_curve", curve, {static_cast<hsize_t>(training.curve.size()), 5});
  f.write_attribute("training/val_curve", "columns", std::string("iteration,step,train_loss,val_loss,learning_rate"));

  // Preprocessing (the model sees (image - mean) / std and predicts response / response_std).
  write_preprocessing(f, "preprocessing", preprocessing);
  if (multi) {
    std::vector<std::string> keys;
    std::vector<int64_t> counts;
    for (int r = 0; r < model.num_readouts(); ++r) {
      keys.push_back(model.readout_spec(r).key);
      counts.push_back(model.readout_spec(r).n_neurons);
    }
    f.write_strings("readouts/data_keys", keys);
    f.write("readouts/n_neurons", counts, {static_cast<hsize_t>(counts.size())});
    for (int r = 0; r < model.num_readouts(); ++r)
      write_preprocessing(f, "readouts/" + keys[static_cast<size_t>(r)] + "/preprocessing",
                          all_preprocessing[static_cast<size_t>(r)]);
  }

  // export/: a framework-neutral description (PyTorch conventions).
  f.create_group("export");
  // One export/layer{i} per convolution, in order (a depth-separable layer gives three: 1x1, depthwise, 1x1).
  const auto write_group = [&](const std::string& g, const ExportGroup& group) {
    for (const auto& t : group.tensors) f.write(g + "/" + t.name, t.values, h5::Shape(t.shape.begin(), t.shape.end()));
    for (const auto& [name, value] : group.text_attributes) f.write_attribute(g, name, value);
    for (const auto& [name, value] : group.int_attributes) f.write_attribute(g, name, value);
    for (const auto& [name, value] : group.real_attributes) f.write_attribute(g, name, value);
  };
  const auto core_entries = model.core_export();
  for (size_t i = 0; i < core_entries.size(); ++i) write_group("export/layer" + std::to_string(i), core_entries[i]);
  f.write_attribute("export", "num_layers", static_cast<int64_t>(core_entries.size()));
  for (int r = 0; r < model.num_readouts(); ++r) {
    const std::string g = multi ? "export/readouts/" + model.readout_spec(r).key : std::string("export/readout");
    write_group(g, model.readout_export(r));
    f.write_attribute(g, "output_nonlinearity", std::string(layers::to_string(model.output_nonlinearity())));
  }
  if (multi) {
    std::string keys;
    for (int r = 0; r < model.num_readouts(); ++r) keys += (r ? "," : "") + model.readout_spec(r).key;
    f.write_attribute("export", "data_keys", keys);
  }
  write_preprocessing(f, "export/preprocessing", preprocessing);
  f.commit();
}

Checkpoint load_checkpoint(const std::string& path) {
  auto f = h5::File::open(path);
  if (!f.has_attribute("/", "format_version") || !f.has_attribute("/", "kind") ||
      f.read_attribute_string("/", "kind") != kKind)
    throw IoError("not a v1sysid checkpoint (no 'kind' = '" + std::string(kKind) + "' attribute)", path,
                  "pass the checkpoint.h5 written by 'v1sysid train'");
  const int64_t version = f.read_attribute_int("/", "format_version");
  if (version != kCheckpointFormatVersion)
    throw IoError("checkpoint format_version " + std::to_string(version) + ", this v1sysid reads version " +
                      std::to_string(kCheckpointFormatVersion),
                  path, "use the v1sysid version that wrote it, or retrain");
  Checkpoint c;
  c.path = path;
  const auto config = parse_model_config(f.read_attribute_string("/", "config"), path + ":config");
  const auto height = static_cast<int>(f.read_attribute_int("/", "height"));
  const auto width = static_cast<int>(f.read_attribute_int("/", "width"));
  const auto neurons = static_cast<int>(f.read_attribute_int("/", "n_neurons"));
  c.dataset_source = f.read_attribute_string("/", "dataset");
  std::vector<ReadoutSpec> specs{ReadoutSpec{"", neurons}};
  if (f.exists("readouts/data_keys")) {
    const auto keys = f.read_strings("readouts/data_keys");
    const auto counts = f.read<int64_t>("readouts/n_neurons");
    if (keys.size() != counts.size() || keys.empty())
      throw ShapeError("readouts/data_keys and readouts/n_neurons differ in length", path, "the checkpoint is corrupt");
    specs.clear();
    for (size_t r = 0; r < keys.size(); ++r) specs.push_back(ReadoutSpec{keys[r], static_cast<int>(counts[r])});
  }
  c.model = std::make_unique<Model<Real>>(config, height, width, specs);
  auto& arena = c.model->arena();
  for (const auto& s : arena.slots()) {
    read_into(f, "params/" + s.name, arena.params(), s);
    if (!s.trainable) continue;
    read_into(f, "adam/m/" + s.name, arena.adam_m(), s);
    read_into(f, "adam/v/" + s.name, arena.adam_v(), s);
  }
  arena.set_adam_step(f.read_scalar<int64_t>("adam/step"));

  c.preprocessing = read_preprocessing(f, "preprocessing");
  if (static_cast<int>(c.preprocessing.response_std.size()) != neurons)
    throw ShapeError("preprocessing/response_std has " + std::to_string(c.preprocessing.response_std.size()) +
                         " entries for " + std::to_string(neurons) + " neurons",
                     path, "the checkpoint is corrupt; retrain");
  if (specs.size() == 1) c.readout_preprocessing.push_back(c.preprocessing);
  for (size_t r = 0; specs.size() > 1 && r < specs.size(); ++r)
    c.readout_preprocessing.push_back(read_preprocessing(f, "readouts/" + specs[r].key + "/preprocessing"));

  auto& t = c.training;
  t.status = f.read_attribute_string("training", "status");
  t.message = f.read_attribute_string("training", "message");
  t.best_val_loss = f.read_attribute_double("training", "best_val_loss");
  t.best_iteration = f.read_attribute_int("training", "best_iteration");
  t.iterations = f.read_attribute_int("training", "iterations");
  t.steps = f.read_attribute_int("training", "steps");
  t.wall_seconds = f.read_attribute_double("training", "wall_seconds");
  t.final_learning_rate = f.read_attribute_double("training", "final_learning_rate");
  t.restored_best = f.read_attribute_int("training", "restored_best") != 0;
  h5::Shape shape;
  const auto curve = f.read<double>("training/val_curve", &shape);
  for (size_t k = 0; shape.size() == 2 && shape[1] == 5 && k < shape[0]; ++k) {
    const double* r = curve.data() + 5 * k;
    t.curve.push_back({static_cast<int64_t>(r[0]), static_cast<int64_t>(r[1]), r[2], r[3], r[4]});
  }
  return c;
}

int readout_of_dataset(const Checkpoint& c, const Dataset& d) {
  return c.model->num_readouts() == 1 ? 0 : c.model->readout_index(d.data_key);
}

int check_checkpoint_fits(const Checkpoint& c, const Dataset& d) {
  const auto& m = *c.model;
  const int r = readout_of_dataset(c, d);
  const int neurons = m.readout_spec(r).n_neurons;
  if (d.height != m.height() || d.width != m.width())
    throw ShapeError("the checkpoint's model takes " + std::to_string(m.height()) + " x " + std::to_string(m.width()) +
                         " images, the dataset has " + std::to_string(d.height) + " x " + std::to_string(d.width),
                     c.path + " with " + d.source, "use the dataset the model was trained on (" + c.dataset_source + ")");
  if (d.n_neurons != neurons)
    throw ShapeError("the checkpoint's model predicts " + std::to_string(neurons) + " neurons, the dataset has " +
                         std::to_string(d.n_neurons),
                     c.path + " with " + d.source, "use the dataset the model was trained on (" + c.dataset_source + ")");
  return r;
}

int fit_dataset_to_checkpoint(const Checkpoint& c, Dataset& d) {
  const int r = readout_of_dataset(c, d);
  const std::string group =
      c.model->num_readouts() == 1 ? "preprocessing" : "readouts/" + d.data_key + "/preprocessing";
  apply_neuron_selection(d, c.readout_preprocessing[static_cast<size_t>(r)].neurons,
                         c.path + " (" + group + "/neuron_indices)");
  return check_checkpoint_fits(c, d);
}

}  // namespace v1sysid
