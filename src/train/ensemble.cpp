#include "train/ensemble.hpp"

#include "core/error.hpp"
#include "data/digest.hpp"
#include "io/h5.hpp"

#include <filesystem>
#include <limits>

namespace v1sysid {

namespace {

constexpr const char* kKind = "v1sysid ensemble";
constexpr int64_t kFormatVersion = 1;

// Member m must answer the same images and neurons as member 0.
void check_member_matches(const Checkpoint& first, const Checkpoint& member, const std::string& ensemble) {
  auto refuse = [&](const std::string& what) {
    throw ShapeError("member " + member.path + " " + what + " than the first member, " + first.path, ensemble,
                     "build the ensemble from checkpoints of one architecture trained on one dataset");
  };
  const Model<Real>& a = *first.model;
  const Model<Real>& b = *member.model;
  if (a.height() != b.height() || a.width() != b.width()) refuse("takes another image size");
  if (a.num_readouts() != b.num_readouts()) refuse("has another number of readouts");
  for (int r = 0; r < a.num_readouts(); ++r) {
    if (a.readout_spec(r).key != b.readout_spec(r).key || a.readout_spec(r).n_neurons != b.readout_spec(r).n_neurons)
      refuse("has other readouts (data keys or neuron counts)");
    if (first.readout_preprocessing[static_cast<size_t>(r)].neurons.indices !=
        member.readout_preprocessing[static_cast<size_t>(r)].neurons.indices)
      refuse("was trained on other neurons (--neurons)");
  }
}

}  // namespace

bool is_ensemble_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  try {
    auto f = h5::File::open(path);
    return f.has_attribute("/", "kind") && f.read_attribute_string("/", "kind") == kKind;
  } catch (const Error&) {
    return false;  // not HDF5, or unreadable: load_checkpoint says why
  }
}

void save_ensemble(const std::string& path, const EnsembleSpec& spec, bool force) {
  if (spec.members.empty())
    throw ConfigError("an ensemble needs at least one member", path, "choose trials that finished (status ok)");
  std::vector<std::string> members, digests;
  Checkpoint first;
  for (size_t m = 0; m < spec.members.size(); ++m) {
    members.push_back(std::filesystem::absolute(spec.members[m]).lexically_normal().string());
    Checkpoint c = load_checkpoint(members.back());
    if (m == 0)
      first = std::move(c);
    else
      check_member_matches(first, c, path);
    digests.push_back(dataset_digest(members.back()));
  }
  const auto K = static_cast<hsize_t>(members.size());
  std::vector<int64_t> trials = spec.trials;
  std::vector<double> val_loss = spec.val_loss, val_correlation = spec.val_correlation;
  trials.resize(members.size(), -1);
  val_loss.resize(members.size(), std::numeric_limits<double>::quiet_NaN());
  val_correlation.resize(members.size(), std::numeric_limits<double>::quiet_NaN());
  auto f = h5::File::create(path, force);
  f.write_strings("members", members);
  f.write_strings("digests", digests);
  f.write("trials", trials, {K});
  f.write("val_loss", val_loss, {K});
  f.write("val_correlation", val_correlation, {K});
  f.write_attribute("/", "kind", std::string(kKind));
  f.write_attribute("/", "format_version", kFormatVersion);
  f.write_attribute("/", "results", spec.results);
  f.write_attribute("/", "architecture", spec.architecture);
  f.write_attribute("/", "data_fraction", spec.data_fraction);
  if (!spec.ranked_by.empty()) f.write_attribute("/", "ranked_by", spec.ranked_by);
  f.commit();
}

std::vector<Checkpoint> load_models(const std::string& path) {
  std::vector<Checkpoint> out;
  if (!is_ensemble_file(path)) {
    out.push_back(load_checkpoint(path));
    return out;
  }
  auto f = h5::File::open(path);
  const int64_t version = f.read_attribute_int("/", "format_version");
  if (version != kFormatVersion)
    throw IoError("ensemble format_version " + std::to_string(version) + ", this v1sysid reads version " +
                      std::to_string(kFormatVersion),
                  path, "rebuild it with this v1sysid's `ensemble` command");
  for (const char* field : {"members", "digests"})
    if (!f.exists(field))
      throw IoError(std::string("ensemble file without '") + field + "'", path, "rebuild it with `v1sysid ensemble`");
  const auto members = f.read_strings("members");
  const auto digests = f.read_strings("digests");
  if (members.empty() || digests.size() != members.size())
    throw DataError("'members' and 'digests' are empty or of different lengths", path, "rebuild it with `v1sysid ensemble`");
  for (size_t m = 0; m < members.size(); ++m) {
    if (!std::filesystem::is_regular_file(members[m]))
      throw IoError("member " + std::to_string(m) + " (" + members[m] + ") does not exist", path,
                    "restore the sweep's checkpoint folder or rebuild the ensemble");
    if (dataset_digest(members[m]) != digests[m])
      throw DataError("member " + std::to_string(m) + " (" + members[m] +
                          ") changed since the ensemble was made (its SHA-256 differs from 'digests')",
                      path, "restore that checkpoint or rebuild the ensemble");
    out.push_back(load_checkpoint(members[m]));
    if (m > 0) check_member_matches(out.front(), out.back(), path);
  }
  return out;
}

}  // namespace v1sysid
