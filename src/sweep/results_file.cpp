#include "sweep/results_file.hpp"

#include "core/error.hpp"
#include "core/version.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

namespace v1sysid {

namespace {

constexpr size_t kArchLen = 64, kStatusLen = 16, kMessageLen = 256, kHostLen = 64;

struct Column {
  const char* name;
  enum Type { f64, f32, i64, i32, str } type;
  size_t str_len = 0;
  int rank = 1;  // 1: [n_trials]; 2: [n_trials, width]
};

h5::Handle string_type(size_t len) {
  h5::Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), len);
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  return t;
}

std::string padded(const std::string& s, size_t len) {
  std::string out = s.substr(0, len);
  out.resize(len, '\0');
  return out;
}

void create_dataset(const h5::File& f, const std::string& name, hid_t type, const std::vector<hsize_t>& dims,
                    const void* fill) {
  h5::Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  h5::Handle dcpl = h5::untimed_create_plist(H5P_DATASET_CREATE);
  H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS);       // raw writes never touch metadata (crash safety)
  H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY);
  H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_ALLOC);
  if (fill) H5Pset_fill_value(dcpl.get(), type, fill);
  h5::Handle d(h5::check_id(H5Dcreate2(f.id(), name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                            "H5Dcreate2", f.path(), name),
               H5Dclose);
}

std::vector<std::string> row_datasets(const ResultsLayout& l) {
  std::vector<std::string> names{"trials/trial_id",   "trials/architecture",    "trials/status",
                                 "trials/message",    "trials/best_val_loss",   "trials/test_correlation",
                                 "trials/feve",       "trials/fraction_oracle", "trials/data_fraction",
                                 "trials/seed",       "trials/iterations",      "trials/wall_seconds",
                                 "trials/rank",       "trials/host",            "trials/val_curve",
                                 "trials/neuron_correlation"};
  for (const auto& h : l.hyperparameters) names.push_back("trials/hyperparameters/" + h);
  return names;
}

// Writes one row (or a [1, width] row of a 2-D dataset) with an independent transfer.
void write_row_raw(hid_t dset, hid_t mem_type, int64_t row, hsize_t width, const void* data, const std::string& file,
                   const std::string& name) {
  h5::Handle fspace(H5Dget_space(dset), H5Sclose);
  hsize_t start[2] = {static_cast<hsize_t>(row), 0};
  hsize_t count[2] = {1, width};
  int rank = H5Sget_simple_extent_ndims(fspace.get());
  h5::check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), "H5Sselect_hyperslab",
            file, name);
  h5::Handle mspace(H5Screate_simple(rank, count, nullptr), H5Sclose);
  h5::Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT);
  h5::check(H5Dwrite(dset, mem_type, mspace.get(), fspace.get(), dxpl.get(), data), "H5Dwrite", file, name);
}

void check_metadata(const h5::File& f, const ResultsMetadata& meta) {
  if (!f.has_attribute("/", "format_version") || f.read_attribute_int("/", "format_version") != ResultsFile::kFormatVersion) {
    throw IoError("results file has another format version", f.path(), "write to a new --out file");
  }
  if (f.read_attribute_string("/", "sweep_yaml") != meta.sweep_yaml) {
    throw ConfigError("the sweep changed since this results file was started", f.path(),
                      "resume with the same sweep file, or pass --force to start over, or choose a new --out");
  }
  if (f.read_attribute_string("/", "dataset_checksum") != meta.dataset_checksum) {
    throw ConfigError("the dataset differs from the one this results file was started with", f.path(),
                      "resume with the same --data, or pass --force to start over, or choose a new --out");
  }
}

}  // namespace

bool is_finished_status(const std::string& status) {
  return status == "ok" || status == "diverged" || status == "failed";
}

ResultsFile ResultsFile::create(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                                const ResultsMetadata& meta, const std::vector<Trial>& trials, bool force) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  int exists = std::filesystem::exists(path) ? 1 : 0;
  MPI_Bcast(&exists, 1, MPI_INT, 0, comm);
  if (exists && !force) {
    throw IoError("results file already exists", path, "rerun without --force resumes it; --force starts over");
  }
  const std::string partial = path + ".partial";
  {
    h5::File f = h5::File::create_parallel(partial, comm, /*force=*/true);
    const hsize_t n = static_cast<hsize_t>(layout.n_trials);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const float nanf = std::numeric_limits<float>::quiet_NaN();
    const int64_t zero64 = 0;
    const int32_t minus1 = -1;
    auto arch_t = string_type(kArchLen), status_t = string_type(kStatusLen), msg_t = string_type(kMessageLen),
         host_t = string_type(kHostLen);
    std::string pending = padded("pending", kStatusLen);
    // Groups first, through File, so that they too are created without timestamps (as every object is).
    f.create_group(layout.hyperparameters.empty() ? "trials" : "trials/hyperparameters");
    create_dataset(f, "trials/trial_id", H5T_NATIVE_INT64, {n}, &zero64);
    create_dataset(f, "trials/architecture", arch_t.get(), {n}, nullptr);
    create_dataset(f, "trials/status", status_t.get(), {n}, pending.data());
    create_dataset(f, "trials/message", msg_t.get(), {n}, nullptr);
    for (const char* c : {"best_val_loss", "test_correlation", "feve", "fraction_oracle", "data_fraction",
                          "wall_seconds"}) {
      create_dataset(f, std::string("trials/") + c, H5T_NATIVE_DOUBLE, {n}, &nan);
    }
    create_dataset(f, "trials/seed", H5T_NATIVE_INT64, {n}, &zero64);
    create_dataset(f, "trials/iterations", H5T_NATIVE_INT64, {n}, &zero64);
    create_dataset(f, "trials/rank", H5T_NATIVE_INT32, {n}, &minus1);
    create_dataset(f, "trials/host", host_t.get(), {n}, nullptr);
    create_dataset(f, "trials/val_curve", H5T_NATIVE_DOUBLE, {n, static_cast<hsize_t>(std::max<int64_t>(1, layout.max_checks))}, &nan);
    create_dataset(f, "trials/neuron_correlation", H5T_NATIVE_FLOAT, {n, static_cast<hsize_t>(std::max<int64_t>(1, layout.n_neurons))}, &nanf);
    for (const auto& h : layout.hyperparameters) create_dataset(f, "trials/hyperparameters/" + h, H5T_NATIVE_DOUBLE, {n}, &nan);

    // Attributes are metadata: every rank writes the same values (collective requirement).
    f.write_attribute("/", "format_version", kFormatVersion);
    f.write_attribute("/", "sweep_yaml", meta.sweep_yaml);
    f.write_attribute("/", "dataset_path", meta.dataset_path);
    f.write_attribute("/", "dataset_checksum", meta.dataset_checksum);
    f.write_attribute("/", "git_hash", std::string(git_hash()));
    f.write_attribute("/", "v1sysid_version", std::string(version_string()));
    f.write_attribute("/", "kokkos_backends", kokkos_backends());
    f.write_attribute("/", "kokkos_version", kokkos_version());
    f.write_attribute("/", "versions", version_report());
    int size = 1;
    MPI_Comm_size(comm, &size);
    f.write_attribute("/", "ranks_at_creation", static_cast<int64_t>(size));

    // Static columns of the trial table, written by rank 0 alone.
    if (rank == 0 && n > 0) {
      std::vector<int64_t> ids, seeds;
      std::vector<double> fractions;
      std::string archs;
      for (const auto& t : trials) {
        ids.push_back(t.id);
        seeds.push_back(t.seed);
        fractions.push_back(t.data_fraction);
        archs += padded(t.architecture, kArchLen);
      }
      auto write_all = [&](const char* name, hid_t type, const void* data) {
        h5::Handle d(H5Dopen2(f.id(), name, H5P_DEFAULT), H5Dclose);
        h5::check(H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", partial, name);
      };
      write_all("trials/trial_id", H5T_NATIVE_INT64, ids.data());
      write_all("trials/seed", H5T_NATIVE_INT64, seeds.data());
      write_all("trials/data_fraction", H5T_NATIVE_DOUBLE, fractions.data());
      write_all("trials/architecture", arch_t.get(), archs.data());
      for (const auto& h : layout.hyperparameters) {
        std::vector<double> v;
        for (const auto& t : trials) {
          auto it = t.hyperparameters.find(h);
          v.push_back(it == t.hyperparameters.end() ? nan : it->second);
        }
        write_all(("trials/hyperparameters/" + h).c_str(), H5T_NATIVE_DOUBLE, v.data());
      }
    }
    f.close();  // collective
  }
  if (rank == 0) {
    std::error_code ec;
    std::filesystem::rename(partial, path, ec);
    if (ec) throw IoError("cannot move the new results file into place (" + ec.message() + ")", path, "check the directory");
  }
  MPI_Barrier(comm);
  return open_for_resume(path, comm, layout, meta);
}

ResultsFile ResultsFile::open_for_resume(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                                         const ResultsMetadata& meta) {
  h5::File f = h5::File::open_parallel(path, comm);
  check_metadata(f, meta);
  auto shape = f.shape("trials/status");
  if (shape.size() != 1 || static_cast<int64_t>(shape[0]) != layout.n_trials) {
    throw IoError("results file holds another number of trials", path, "pass --force to start over or choose a new --out");
  }
  ResultsFile r(std::move(f), layout);
  r.open_datasets();
  return r;
}

void ResultsFile::open_datasets() {
  for (const auto& name : row_datasets(m_layout)) m_datasets.emplace(name, m_file.open_dataset(name));
}

void ResultsFile::write_row(int64_t id, const TrialResult& r, int rank, const std::string& host) {
  const std::string& file = m_file.path();
  auto ds = [&](const std::string& name) { return m_datasets.at("trials/" + name).get(); };
  auto write_double = [&](const char* name, double v) { write_row_raw(ds(name), H5T_NATIVE_DOUBLE, id, 1, &v, file, name); };
  auto write_string = [&](const char* name, const std::string& s, size_t len) {
    auto t = string_type(len);
    std::string p = padded(s, len);
    write_row_raw(ds(name), t.get(), id, 1, p.data(), file, name);
  };
  write_double("best_val_loss", r.best_val_loss);
  write_double("test_correlation", r.test_correlation);
  write_double("feve", r.feve);
  write_double("fraction_oracle", r.fraction_oracle);
  write_double("wall_seconds", r.wall_seconds);
  write_row_raw(ds("iterations"), H5T_NATIVE_INT64, id, 1, &r.iterations, file, "iterations");
  int32_t rank32 = rank;
  write_row_raw(ds("rank"), H5T_NATIVE_INT32, id, 1, &rank32, file, "rank");
  write_string("host", host, kHostLen);
  write_string("message", r.message, kMessageLen);

  std::vector<double> curve(static_cast<size_t>(std::max<int64_t>(1, m_layout.max_checks)), std::numeric_limits<double>::quiet_NaN());
  std::copy_n(r.val_curve.begin(), std::min(curve.size(), r.val_curve.size()), curve.begin());
  write_row_raw(ds("val_curve"), H5T_NATIVE_DOUBLE, id, curve.size(), curve.data(), file, "val_curve");
  std::vector<float> corr(static_cast<size_t>(std::max<int64_t>(1, m_layout.n_neurons)), std::numeric_limits<float>::quiet_NaN());
  std::copy_n(r.neuron_correlation.begin(), std::min(corr.size(), r.neuron_correlation.size()), corr.begin());
  write_row_raw(ds("neuron_correlation"), H5T_NATIVE_FLOAT, id, corr.size(), corr.data(), file, "neuron_correlation");

  write_string("status", r.status, kStatusLen);  // last: a row counts as finished only once this lands
}

std::vector<std::string> ResultsFile::read_statuses() const {
  const hid_t d = m_datasets.at("trials/status").get();
  auto t = string_type(kStatusLen);
  std::vector<char> raw(static_cast<size_t>(m_layout.n_trials) * kStatusLen);
  h5::Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT);
  if (!raw.empty()) h5::check(H5Dread(d, t.get(), H5S_ALL, H5S_ALL, dxpl.get(), raw.data()), "H5Dread", m_file.path(), "trials/status");
  std::vector<std::string> out;
  for (int64_t i = 0; i < m_layout.n_trials; ++i) {
    std::string s(raw.data() + i * kStatusLen, kStatusLen);
    s.erase(s.find_last_not_of('\0') + 1);
    out.push_back(s);
  }
  return out;
}

void ResultsFile::close() {
  m_datasets.clear();
  m_file.close();
}

}  // namespace v1sysid
