// Reader for neuralpredictors' FileTree datasets (Lurz 2020, SENSORIUM 2022; data-formats.md §B.2), as a
// folder or as a .zip read in memory through libzip:
//   data/images/<i>.npy (1,H,W) or (H,W), data/responses/<i>.npy (n,)    file index = trial index
//   meta/trials/tiers.npy (N,) str, meta/trials/<image id field>.npy (N,)
//   meta/neurons/unit_ids.npy (n,), meta/neurons/cell_motor_coordinates.npy (n,3)
//   meta/statistics/<images|responses>/<all|...>/{mean,std}.npy           image statistics are 0-d
//   gt/<field>.npy (or meta/gt/<field>.npy): the simulator's ground truth, as the HDF5 gt/ group
// Paths match case-insensitively (exports differ in "stimulus_Frame" vs "stimulus_frame"). Unlike the
// Python loader, nothing is ever written: no config.json, no unzipped copy next to the archive.
#include "core/error.hpp"
#include "data/dataset.hpp"
#include "data/dataset_detail.hpp"
#include "io/npy.hpp"

#include <zip.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <unordered_map>

namespace v1sysid {

namespace fs = std::filesystem;

namespace {

const char* kLayoutFix =
    "a FileTree dataset needs data/images/<i>.npy, data/responses/<i>.npy and meta/trials/tiers.npy";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

// The files of one dataset, by path relative to its root, looked up case-insensitively.
class Tree {
 public:
  virtual ~Tree() = default;
  // Whole file content; `rel` is an actual relative path from find()/list().
  virtual std::vector<uint8_t> read(const std::string& rel) const = 0;
  // How error messages name a file of the tree.
  virtual std::string where(const std::string& rel) const = 0;

  std::optional<std::string> find(const std::string& rel) const {
    auto it = m_index.find(lower(rel));
    if (it == m_index.end()) return std::nullopt;
    return it->second;
  }
  // Actual relative paths of the files directly inside folder `dir` (no trailing '/').
  std::vector<std::string> list(const std::string& dir) const {
    const std::string prefix = lower(dir) + "/";
    std::vector<std::string> out;
    for (const auto& [key, actual] : m_index) {
      if (key.compare(0, prefix.size(), prefix) == 0 && key.find('/', prefix.size()) == std::string::npos) {
        out.push_back(actual);
      }
    }
    return out;
  }
  // Names of the sub-folders of `dir` that contain files.
  std::vector<std::string> subfolders(const std::string& dir) const {
    const std::string prefix = lower(dir) + "/";
    std::vector<std::string> out;
    for (const auto& [key, actual] : m_index) {
      if (key.compare(0, prefix.size(), prefix) != 0) continue;
      size_t slash = key.find('/', prefix.size());
      if (slash == std::string::npos) continue;
      std::string name = actual.substr(prefix.size(), slash - prefix.size());
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  bool has_folder(const std::string& dir) const { return !list(dir).empty() || !subfolders(dir).empty(); }

  npy::Array array(const std::string& rel) const {
    auto bytes = read(rel);
    return npy::parse(bytes.data(), bytes.size(), where(rel));
  }

 protected:
  void add(const std::string& rel) { m_index.emplace(lower(rel), rel); }

 private:
  std::unordered_map<std::string, std::string> m_index;  // lower-case path -> actual path
};

class FolderTree : public Tree {
 public:
  explicit FolderTree(const std::string& root) : m_root(root) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
         it != end; it.increment(ec)) {
      if (ec) throw IoError("cannot list the folder (" + ec.message() + ")", root, "check permissions");
      if (it->is_regular_file(ec)) add(it->path().lexically_relative(root).generic_string());
    }
    if (ec) throw IoError("cannot list the folder (" + ec.message() + ")", root, "check permissions");
  }
  std::vector<uint8_t> read(const std::string& rel) const override {
    const std::string path = (fs::path(m_root) / rel).string();
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError("cannot open file", path, "check permissions");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) throw IoError("read error", path, "check the storage");
    return bytes;
  }
  std::string where(const std::string& rel) const override { return (fs::path(m_root) / rel).string(); }

 private:
  std::string m_root;
};

// Reads entries straight out of the archive into memory. The archive is opened read-only and discarded
// (never closed with write-back), so it is never modified.
class ZipTree : public Tree {
 public:
  explicit ZipTree(const std::string& path) : m_path(path) {
    int code = 0;
    zip_t* z = zip_open(path.c_str(), ZIP_RDONLY, &code);
    if (z == nullptr) {
      zip_error_t error;
      zip_error_init_with_code(&error, code);
      std::string message = zip_error_strerror(&error);
      zip_error_fini(&error);
      throw IoError("cannot open zip archive (" + message + ")", path,
                    "check that the download is complete (a truncated .zip has no central directory)");
    }
    m_zip.reset(z);
    const zip_int64_t n = zip_get_num_entries(z, 0);
    std::vector<std::string> names;
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* name = zip_get_name(z, static_cast<zip_uint64_t>(i), 0);
      if (name == nullptr) continue;
      std::string s = name;
      if (s.empty() || s.back() == '/' || s.compare(0, 9, "__MACOSX/") == 0) continue;
      names.push_back(s);
      m_entry[s] = static_cast<zip_uint64_t>(i);
    }
    // Archives usually hold the dataset folder itself (static...-preproc0/data/...): find its prefix.
    m_prefix = find_prefix(names);
    for (const auto& s : names) {
      if (s.size() > m_prefix.size() && lower(s.substr(0, m_prefix.size())) == lower(m_prefix)) {
        add(s.substr(m_prefix.size()));
      }
    }
  }

  std::vector<uint8_t> read(const std::string& rel) const override {
    const std::string name = m_prefix + rel;
    const zip_uint64_t index = m_entry.at(name);
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(m_zip.get(), index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
      throw IoError("cannot read the size of an archive entry", where(rel), "the archive is damaged; download it again");
    }
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(zip_fopen_index(m_zip.get(), index, 0), zip_fclose);
    if (!file) {
      throw IoError(std::string("cannot open archive entry (") + zip_strerror(m_zip.get()) + ")", where(rel),
                    "the archive is damaged or uses an unsupported compression; re-create it");
    }
    // One spare byte: libzip compares the entry's CRC-32 only when a read reaches the end of the entry, so
    // reading until zip_fread returns 0 (never stopping at the declared size) is what detects damaged data.
    std::vector<uint8_t> bytes(static_cast<size_t>(st.size) + 1);
    zip_uint64_t done = 0;
    for (;;) {
      zip_int64_t got = zip_fread(file.get(), bytes.data() + done, bytes.size() - done);
      if (got < 0) {
        throw IoError(std::string("the archive is damaged: cannot read entry (") + zip_file_strerror(file.get()) + ")",
                      where(rel), "download the archive again or re-create it (zip -r) from the dataset folder");
      }
      if (got == 0) break;
      done += static_cast<zip_uint64_t>(got);
      if (done > st.size) break;
    }
    if (done != st.size) {
      throw IoError("the archive is damaged: entry holds " + std::string(done > st.size ? "more than " : "") +
                        std::to_string(done) + " bytes, its header declares " + std::to_string(st.size),
                    where(rel), "download the archive again or re-create it (zip -r) from the dataset folder");
    }
    bytes.resize(static_cast<size_t>(done));
    return bytes;
  }
  std::string where(const std::string& rel) const override { return m_path + ":" + m_prefix + rel; }

 private:
  static std::string find_prefix(const std::vector<std::string>& names) {
    std::optional<std::string> best;
    for (const auto& s : names) {
      const std::string l = lower(s);
      for (const char* marker : {"meta/trials/tiers.npy", "data/responses/", "data/images/"}) {
        size_t pos = l.rfind(marker);
        if (pos == std::string::npos || (pos > 0 && l[pos - 1] != '/')) continue;
        if (!best || pos < best->size()) best = s.substr(0, pos);
      }
    }
    return best.value_or("");
  }
  struct Discard {
    void operator()(zip_t* z) const { zip_discard(z); }
  };
  std::string m_path;
  std::string m_prefix;
  std::unique_ptr<zip_t, Discard> m_zip;
  std::map<std::string, zip_uint64_t> m_entry;
};

// The numbered files data/<key>/<i>.npy for i = 0..N-1, in trial order.
std::vector<std::string> numbered_files(const Tree& tree, const std::string& dir) {
  if (!tree.has_folder(dir)) throw DataError("missing field '" + dir + "' (folder of per-trial .npy files)", tree.where(""), kLayoutFix);
  std::map<int64_t, std::string> by_index;
  for (const auto& rel : tree.list(dir)) {
    const std::string name = fs::path(rel).filename().string();
    if (name.empty() || name[0] == '.') continue;  // .DS_Store and similar
    const std::string stem = fs::path(name).stem().string();
    const bool numeric = !stem.empty() && std::all_of(stem.begin(), stem.end(), [](unsigned char c) { return std::isdigit(c); });
    if (lower(fs::path(name).extension().string()) != ".npy" || !numeric || stem.size() > 12) {
      throw DataError("unexpected file '" + name + "' in '" + dir + "'", tree.where(rel),
                      "this folder may only hold <trial index>.npy files; move other files elsewhere");
    }
    by_index[std::stoll(stem)] = rel;
  }
  std::vector<std::string> out;
  for (const auto& [index, rel] : by_index) {
    if (index != static_cast<int64_t>(out.size())) {
      throw DataError("'" + dir + "/" + std::to_string(out.size()) + ".npy' is missing (" + std::to_string(by_index.size()) +
                          " files, highest index " + std::to_string(by_index.rbegin()->first) + ")",
                      tree.where(dir), "file index = trial index: files 0.npy .. (N-1).npy must all be present");
    }
    out.push_back(rel);
  }
  return out;
}

std::optional<npy::Array> optional_array(const Tree& tree, const std::string& rel) {
  if (auto actual = tree.find(rel)) return tree.array(*actual);
  return std::nullopt;
}

npy::Array one_d(npy::Array a, int64_t length, const std::string& field, const std::string& what) {
  if (a.shape.size() != 1 || a.shape[0] != length) {
    throw DataError("'" + field + "' has shape " + shape_text(a.shape) + ", expected (" + std::to_string(length) + ",)",
                    a.where, "store " + what);
  }
  return a;
}

std::vector<int64_t> ids_of(const npy::Array& a) {
  if (a.is_string()) return data_detail::ids_from_strings(a.strings());
  return a.values<int64_t>();
}

void read_image_ids(const Tree& tree, Dataset& d) {
  auto per_trial = [&](const std::string& rel) -> std::optional<npy::Array> {
    auto a = optional_array(tree, rel);
    if (!a) return a;
    if (a->shape.size() != 1) {
      throw DataError("'" + rel + "' has shape " + shape_text(a->shape) + ", expected (N,)", a->where,
                      "store one image id per trial");
    }
    data_detail::check_lengths(tree.where(""), {{"data/images", d.n_trials}, {rel, a->shape[0]}});
    return a;
  };
  for (const auto& field : data_detail::image_id_fields()) {
    const std::string rel = std::string("meta/trials/") + field.id + ".npy";
    auto ids = per_trial(rel);
    if (!ids) continue;
    d.image_ids = ids_of(*ids);
    auto cls = optional_array(tree, std::string("meta/trials/") + field.image_class + ".npy");
    if (cls && cls->is_string() && cls->shape == std::vector<int64_t>{d.n_trials}) {
      d.image_ids = data_detail::ids_with_class(d.image_ids, cls->strings());
    }
    d.image_id_source = rel;
    return;
  }
  if (auto hashes = per_trial("meta/trials/condition_hash.npy")) {
    d.image_ids = ids_of(*hashes);
    d.image_id_source = "meta/trials/condition_hash.npy";
    return;
  }
  d.image_ids = data_detail::ids_from_pixels(d.images, d.n_trials, d.height * d.width);
  d.image_id_source = "pixel hash";
}

void read_statistics(const Tree& tree, Dataset& d) {
  if (!tree.has_folder("meta/statistics")) return;
  auto subset = [&](const std::string& kind) -> std::string {
    const std::string dir = "meta/statistics/" + kind;
    auto subs = tree.subfolders(dir);
    for (const auto& s : subs) {
      if (lower(s) == "all") return dir + "/" + s;
    }
    return subs.empty() ? "" : dir + "/" + subs.front();
  };
  StoredStatistics s;
  const std::string images = subset("images");
  if (!images.empty()) {
    for (auto [name, target] : {std::pair<const char*, std::optional<double>*>{"mean", &s.image_mean},
                                std::pair<const char*, std::optional<double>*>{"std", &s.image_std}}) {
      if (auto a = optional_array(tree, images + "/" + name + ".npy")) {
        if (a->size() != 1) {
          throw DataError("'" + images + "/" + name + ".npy' has shape " + shape_text(a->shape) +
                              ", expected a 0-d scalar",
                          a->where, "store image statistics as 0-d arrays (grey images have one channel)");
        }
        *target = a->values<double>()[0];
      }
    }
  }
  const std::string responses = subset("responses");
  if (!responses.empty()) {
    for (auto [name, target] : {std::pair<const char*, std::vector<float>*>{"mean", &s.response_mean},
                                std::pair<const char*, std::vector<float>*>{"std", &s.response_std}}) {
      if (auto a = optional_array(tree, responses + "/" + name + ".npy")) {
        *target = one_d(*a, d.n_neurons, responses + "/" + name + ".npy", "one statistic per neuron").values<float>();
      }
    }
  }
  d.stored_statistics = s;
}

void read_ground_truth(const Tree& tree, Dataset& d) {
  std::string dir;
  if (tree.has_folder("gt")) {
    dir = "gt";
  } else if (tree.has_folder("meta/gt")) {
    dir = "meta/gt";
  } else {
    return;
  }
  GroundTruth gt;
  auto field = [&](const char* name) { return optional_array(tree, dir + "/" + name + ".npy"); };
  if (auto a = field("cell_type")) gt.cell_type = a->strings();
  if (auto a = field("orientation")) gt.orientation = a->values<float>();
  if (auto a = field("position")) {
    if (a->shape.size() != 2 || a->shape[1] != 2) {
      throw DataError("'" + dir + "/position.npy' has shape " + shape_text(a->shape) + ", expected (n_neurons, 2)",
                      a->where, "store (x, y) per neuron");
    }
    gt.position = a->values<float>();
  }
  if (auto a = field("ceiling_correlation")) gt.ceiling_correlation = a->values<float>();
  if (auto a = field("fev")) gt.fev = a->values<float>();
  if (auto a = field("test_rates")) {
    if (a->shape.size() != 2) {
      throw DataError("'" + dir + "/test_rates.npy' has shape " + shape_text(a->shape) +
                          ", expected (n_test_images, n_neurons)",
                      a->where, "store one row of noise-free rates per test image");
    }
    gt.test_rates = a->values<float>();
    if (auto ids = field("test_image_ids")) {
      gt.test_image_ids = ids->values<int64_t>();
    } else {
      data_detail::fill_test_image_ids(gt, a->shape[0], d, a->where, dir + "/test_rates.npy");
    }
  }
  d.ground_truth = std::move(gt);
}

Dataset read_tree(const Tree& tree, const std::string& source, const std::string& format) {
  Dataset d;
  d.source = source;
  d.format = format;
  d.data_key = data_key_from_path(source);
  if (!tree.has_folder("data") && !tree.has_folder("meta")) {
    throw DataError("not a FileTree dataset: there is no data/ or meta/ folder", source, kLayoutFix);
  }

  const auto image_files = numbered_files(tree, "data/images");
  const auto response_files = numbered_files(tree, "data/responses");
  const auto tiers_rel = tree.find("meta/trials/tiers.npy");
  if (!tiers_rel) throw DataError("missing field 'meta/trials/tiers.npy'", source, kLayoutFix);
  npy::Array tiers = tree.array(*tiers_rel);
  if (tiers.shape.size() != 1) {
    throw DataError("'meta/trials/tiers.npy' has shape " + shape_text(tiers.shape) + ", expected (N,)", tiers.where,
                    "store one tier name per trial");
  }
  data_detail::check_lengths(source, {{"data/images", static_cast<int64_t>(image_files.size())},
                                      {"data/responses", static_cast<int64_t>(response_files.size())},
                                      {"meta/trials/tiers.npy", tiers.shape[0]}});
  d.n_trials = static_cast<int64_t>(image_files.size());
  d.tiers = data_detail::parse_tiers(tiers.strings(), tiers.where, "meta/trials/tiers.npy");

  std::vector<int64_t> first_image_shape;
  for (int64_t i = 0; i < d.n_trials; ++i) {
    npy::Array a = tree.array(image_files[static_cast<size_t>(i)]);
    if (i == 0) {
      first_image_shape = a.shape;
      const bool grey = (a.shape.size() == 3 && a.shape[0] == 1) || a.shape.size() == 2;
      if (!grey) {
        throw DataError("'" + image_files[0] + "' has shape " + shape_text(a.shape) +
                            ", expected (1, H, W) or (H, W)",
                        a.where, "store one grey image per trial");
      }
      d.height = a.shape[a.shape.size() - 2];
      d.width = a.shape[a.shape.size() - 1];
      d.images.resize(static_cast<size_t>(d.n_trials * d.height * d.width));
    } else if (a.shape != first_image_shape) {
      throw DataError("'" + image_files[static_cast<size_t>(i)] + "' has shape " + shape_text(a.shape) + " but '" +
                          image_files[0] + "' has " + shape_text(first_image_shape),
                      a.where, "all images of a dataset must have the same size");
    }
    const auto v = a.values<float>();
    std::copy(v.begin(), v.end(), d.images.begin() + i * d.height * d.width);
  }
  for (int64_t i = 0; i < d.n_trials; ++i) {
    npy::Array a = tree.array(response_files[static_cast<size_t>(i)]);
    if (i == 0) {
      if (a.shape.size() != 1) {
        throw DataError("'" + response_files[0] + "' has shape " + shape_text(a.shape) + ", expected (n_neurons,)",
                        a.where, "store one response per neuron for each trial");
      }
      d.n_neurons = a.shape[0];
      d.responses.resize(static_cast<size_t>(d.n_trials * d.n_neurons));
    } else if (a.shape != std::vector<int64_t>{d.n_neurons}) {
      throw DataError("'" + response_files[static_cast<size_t>(i)] + "' has shape " + shape_text(a.shape) + " but '" +
                          response_files[0] + "' has (" + std::to_string(d.n_neurons) + ",)",
                      a.where, "every trial must have a response for every neuron");
    }
    const auto v = a.values<float>();
    std::copy(v.begin(), v.end(), d.responses.begin() + i * d.n_neurons);
  }
  read_image_ids(tree, d);

  if (auto a = optional_array(tree, "meta/neurons/unit_ids.npy")) {
    d.unit_ids = one_d(*a, d.n_neurons, "meta/neurons/unit_ids.npy", "one unit id per response entry").values<int64_t>();
  } else {
    d.unit_ids.resize(static_cast<size_t>(d.n_neurons));
    std::iota(d.unit_ids.begin(), d.unit_ids.end(), int64_t{0});
  }
  if (auto a = optional_array(tree, "meta/neurons/cell_motor_coordinates.npy")) {
    if (a->shape != std::vector<int64_t>{d.n_neurons, 3}) {
      throw DataError("'meta/neurons/cell_motor_coordinates.npy' has shape " + shape_text(a->shape) + ", expected (" +
                          std::to_string(d.n_neurons) + ", 3)",
                      a->where, "store (x, y, z) in micrometres per neuron, in response order");
    }
    d.cortical_coordinates = a->values<float>();
  }
  read_statistics(tree, d);
  read_ground_truth(tree, d);

  auto trial_file = [](const char* dir) {
    return [dir](int64_t i) { return std::string(dir) + "/" + std::to_string(i) + ".npy"; };
  };
  data_detail::validate(d, trial_file("data/images"), trial_file("data/responses"), "meta/trials/tiers.npy",
                        "gt/");
  return d;
}

}  // namespace

Dataset read_file_tree(const std::string& folder_or_zip_path) {
  std::error_code ec;
  if (fs::is_directory(folder_or_zip_path, ec)) {
    return read_tree(FolderTree(folder_or_zip_path), folder_or_zip_path, "filetree");
  }
  if (!fs::exists(folder_or_zip_path, ec)) {
    throw IoError("dataset not found", folder_or_zip_path, "check the path");
  }
  return read_tree(ZipTree(folder_or_zip_path), folder_or_zip_path, "filetree-zip");
}

}  // namespace v1sysid
