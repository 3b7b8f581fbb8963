#include "sweep/results_file.hpp"

#include "core/collective.hpp"
#include "core/error.hpp"
#include "core/version.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>

namespace v1sysid {

namespace {

constexpr size_t kArchLen = 64, kStatusLen = 16, kMessageLen = 256, kHostLen = 64;

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
  errno = 0;
  h5::Handle d(h5::check_write_id(H5Dcreate2(f.id(), name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                                  "H5Dcreate2", f.path(), name),
               H5Dclose);
}

// Seconds since the Unix epoch (the heartbeat's clock: comparable across the nodes of a job).
double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<std::string> row_datasets(const ResultsLayout& l) {
  std::vector<std::string> names{"trials/trial_id",   "trials/architecture",    "trials/status",
                                 "trials/message",    "trials/best_val_loss",   "trials/test_correlation",
                                 "trials/feve",       "trials/fraction_oracle", "trials/data_fraction",
                                 "trials/seed",       "trials/iterations",      "trials/steps",
                                 "trials/wall_seconds", "trials/rank",          "trials/host",
                                 "trials/val_curve",  "trials/neuron_correlation", "trials/row_checksum",
                                 "trials/heartbeat"};
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
  errno = 0;
  h5::check_write(H5Dwrite(dset, mem_type, mspace.get(), fspace.get(), dxpl.get(), data), "H5Dwrite", file, name);
}

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "trials/row_checksum hashes the little-endian bytes of each value (docs/formats.md)"
#endif

// One row of trials/ as stored. Its checksum is 64-bit FNV-1a over the stored bytes of its columns in this order
// (little-endian numbers, strings NUL-padded to their fixed width), the order docs/formats.md gives and
// analysis/v1analysis.py repeats.
struct StoredRow {
  int64_t trial_id = 0;
  std::string architecture;
  double data_fraction = 0;
  int64_t seed = 0;
  std::vector<double> hyperparameters;  // in name order
  std::string status, message;
  double best_val_loss = 0, test_correlation = 0, feve = 0, fraction_oracle = 0;
  int64_t iterations = 0;
  std::optional<int64_t> steps;  // format_version 3 on
  double wall_seconds = 0;
  int32_t rank = 0;
  std::string host;
  const double* val_curve = nullptr;
  size_t curve_width = 0;
  const float* neuron_correlation = nullptr;
  size_t n_neurons = 0;
};

class Fnv1a {
 public:
  void bytes(const void* data, size_t n) {
    const auto* c = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      m_h ^= c[i];
      m_h *= 0x100000001b3ull;
    }
  }
  template <class T>
  void value(const T& v) { bytes(&v, sizeof v); }
  void text(const std::string& s, size_t len) {
    const std::string p = padded(s, len);
    bytes(p.data(), len);
  }
  uint64_t get() const { return m_h; }

 private:
  uint64_t m_h = 0xcbf29ce484222325ull;
};

uint64_t row_checksum(const StoredRow& r) {
  Fnv1a h;
  h.value(r.trial_id);
  h.text(r.architecture, kArchLen);
  h.value(r.data_fraction);
  h.value(r.seed);
  for (double v : r.hyperparameters) h.value(v);
  h.text(r.status, kStatusLen);
  h.text(r.message, kMessageLen);
  for (double v : {r.best_val_loss, r.test_correlation, r.feve, r.fraction_oracle}) h.value(v);
  h.value(r.iterations);
  if (r.steps) h.value(*r.steps);
  h.value(r.wall_seconds);
  h.value(r.rank);
  h.text(r.host, kHostLen);
  h.bytes(r.val_curve, r.curve_width * sizeof(double));
  h.bytes(r.neuron_correlation, r.n_neurons * sizeof(float));
  return h.get();
}

std::string model_files_text(const std::vector<ModelFileChecksum>& files) {
  std::string out;
  for (const auto& m : files) out += m.role + '\t' + m.checksum + '\t' + m.path + '\n';
  return out;
}

std::vector<ModelFileChecksum> parse_model_files(const std::string& text) {
  std::vector<ModelFileChecksum> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    const size_t a = line.find('\t'), b = a == std::string::npos ? a : line.find('\t', a + 1);
    if (b == std::string::npos) continue;
    out.push_back({line.substr(0, a), line.substr(b + 1), line.substr(a + 1, b - a - 1)});
  }
  return out;
}

// "0123456789abcdef[,...]": the FNV-1a checksums that files started before the SHA-256 digests record.
bool is_legacy_checksum(const std::string& stored) {
  std::istringstream s(stored);
  std::string token;
  bool any = false;
  while (std::getline(s, token, ',')) {
    if (token.size() != 16 || token.find_first_not_of("0123456789abcdef") != std::string::npos) return false;
    any = true;
  }
  return any;
}

// Version 3 -> 4, rank 0, serially, after check_existing: adds trials/heartbeat (NaN: no trial of the file has
// a heartbeat yet) and sets format_version. Rows and their checksums are unchanged (the heartbeat is not hashed).
void upgrade_from_version_3(const std::string& path, const ResultsLayout& layout) {
  h5::File f = h5::File::open_rw(path);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  create_dataset(f, "trials/heartbeat", H5T_NATIVE_DOUBLE, {static_cast<hsize_t>(layout.n_trials)}, &nan);
  f.write_attribute("/", "format_version", ResultsFile::kFormatVersion);
  f.close();
  std::fprintf(stderr, "sweep: upgraded %s from results format 3 to %lld (added trials/heartbeat)\n", path.c_str(),
               static_cast<long long>(ResultsFile::kFormatVersion));
}

// Rank 0, read-only, before any rank opens the file for writing: a file that cannot be resumed is refused
// unchanged. Returns the finished rows whose checksum does not match.
std::vector<int64_t> check_existing(const std::string& path, const ResultsLayout& layout, const ResultsMetadata& meta,
                                    int64_t& version) {
  const std::string start_over = "pass --force to replace it, or choose another --out";
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) == 0 && !ec) {
    throw IoError("not a v1sysid results file (an empty file), left unchanged", path, start_over);
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw IoError("not a v1sysid results file (not an HDF5 file, or a truncated one), left unchanged", path, start_over);
  }
  h5::File f = h5::File::open(path);
  if (!f.has_attribute("/", "format_version") || !f.exists("trials/status")) {
    throw IoError("not a v1sysid results file (an HDF5 file without format_version and trials/status), left unchanged",
                  path, start_over);
  }
  version = f.read_attribute_int("/", "format_version");
  if (version != ResultsFile::kFormatVersion && version != 3) {
    throw IoError("results file has format version " + std::to_string(version) + "; this v1sysid resumes version " +
                      std::to_string(ResultsFile::kFormatVersion) + " (and upgrades version 3) only (left unchanged)",
                  path, "finish it with the v1sysid that started it, or pass --force to start over, or choose a new --out");
  }
  // Model files first: an edited base model is the likely change, and the message can name it.
  const auto stored_models = parse_model_files(f.read_attribute_string("/", "model_files"));
  for (const auto& now : meta.model_files) {
    for (const auto& then : stored_models) {
      if (then.role == now.role && then.checksum != now.checksum) {
        throw ConfigError("the model file " + now.path + " (" + now.role +
                              ") changed since this results file was started (its content differs from the one used then, " +
                              then.path + ")",
                          path, "restore that model file, or pass --force to start over, or choose a new --out");
      }
    }
  }
  if (f.read_attribute_string("/", "sweep_identity") != meta.sweep_identity) {
    throw ConfigError("the sweep changed since this results file was started", path,
                      "resume with the same sweep file, or pass --force to start over, or choose a new --out");
  }
  const std::string stored_checksum = f.read_attribute_string("/", "dataset_checksum");
  if (stored_checksum != meta.dataset_checksum &&
      !(is_legacy_checksum(stored_checksum) && meta.legacy_dataset_checksum &&
        stored_checksum == meta.legacy_dataset_checksum())) {
    throw ConfigError("the dataset differs from the one this results file was started with", path,
                      "resume with the same --data, or pass --force to start over, or choose a new --out");
  }
  auto shape = f.shape("trials/status");
  if (shape.size() != 1 || static_cast<int64_t>(shape[0]) != layout.n_trials) {
    throw IoError("results file holds another number of trials", path, "pass --force to start over or choose a new --out");
  }
  return rows_failing_checksum(f);
}

}  // namespace

bool is_finished_status(const std::string& status) {
  return status == "ok" || status == "diverged" || status == "failed" || status == "pruned";
}

ResultsFile ResultsFile::create(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                                const ResultsMetadata& meta, const std::vector<Trial>& trials, bool force) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // Rank 0 writes the whole file serially: a failure (a full disk) then happens on one rank, outside any HDF5
  // collective, and run_agreed hands it to every rank.
  run_agreed(comm, [&] {
    if (rank != 0) return;
    h5::File f = h5::File::create(path, force);  // under "<path>.partial-<pid>" until commit()
    const hsize_t n = static_cast<hsize_t>(layout.n_trials);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const float nanf = std::numeric_limits<float>::quiet_NaN();
    const int64_t zero64 = 0;
    const uint64_t zero_u64 = 0;
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
                          "wall_seconds", "heartbeat"}) {
      create_dataset(f, std::string("trials/") + c, H5T_NATIVE_DOUBLE, {n}, &nan);
    }
    create_dataset(f, "trials/seed", H5T_NATIVE_INT64, {n}, &zero64);
    create_dataset(f, "trials/iterations", H5T_NATIVE_INT64, {n}, &zero64);
    create_dataset(f, "trials/steps", H5T_NATIVE_INT64, {n}, &zero64);
    create_dataset(f, "trials/rank", H5T_NATIVE_INT32, {n}, &minus1);
    create_dataset(f, "trials/host", host_t.get(), {n}, nullptr);
    create_dataset(f, "trials/val_curve", H5T_NATIVE_DOUBLE, {n, static_cast<hsize_t>(std::max<int64_t>(1, layout.max_checks))}, &nan);
    create_dataset(f, "trials/neuron_correlation", H5T_NATIVE_FLOAT, {n, static_cast<hsize_t>(std::max<int64_t>(1, layout.n_neurons))}, &nanf);
    create_dataset(f, "trials/row_checksum", H5T_NATIVE_UINT64, {n}, &zero_u64);
    for (const auto& h : layout.hyperparameters) create_dataset(f, "trials/hyperparameters/" + h, H5T_NATIVE_DOUBLE, {n}, &nan);

    f.write_attribute("/", "format_version", kFormatVersion);
    f.write_attribute("/", "sweep_yaml", meta.sweep_yaml);
    f.write_attribute("/", "sweep_identity", meta.sweep_identity);
    f.write_attribute("/", "model_files", model_files_text(meta.model_files));
    f.write_attribute("/", "dataset_path", meta.dataset_path);
    f.write_attribute("/", "dataset_checksum", meta.dataset_checksum);
    f.write_attribute("/", "git_hash", std::string(git_hash()));
    f.write_attribute("/", "v1sysid_version", std::string(version_string()));
    f.write_attribute("/", "kokkos_backends", kokkos_backends());
    f.write_attribute("/", "kokkos_version", kokkos_version());
    f.write_attribute("/", "versions", version_report());
    f.write_attribute("/", "ranks_at_creation", static_cast<int64_t>(size));

    // Static columns of the trial table.
    if (n > 0) {
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
        h5::Handle d(h5::check_id(H5Dopen2(f.id(), name, H5P_DEFAULT), "H5Dopen2", path, name), H5Dclose);
        errno = 0;
        h5::check_write(H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite", path, name);
      };
      write_all("trials/trial_id", H5T_NATIVE_INT64, ids.data());
      write_all("trials/seed", H5T_NATIVE_INT64, seeds.data());
      write_all("trials/data_fraction", H5T_NATIVE_DOUBLE, fractions.data());
      write_all("trials/architecture", arch_t.get(), archs.data());
      std::vector<std::string> configs = meta.trial_configs;
      configs.resize(trials.size());
      f.write_strings("trials/config", configs);
      for (const auto& h : layout.hyperparameters) {
        std::vector<double> v;
        for (const auto& t : trials) {
          auto it = t.hyperparameters.find(h);
          v.push_back(it == t.hyperparameters.end() ? nan : it->second);
        }
        write_all(("trials/hyperparameters/" + h).c_str(), H5T_NATIVE_DOUBLE, v.data());
      }
    }
    f.commit();  // flush, close, fsync and rename; on failure the partial file is removed
  });
  return open_for_resume(path, comm, layout, meta);
}

ResultsFile ResultsFile::open_for_resume(const std::string& path, MPI_Comm comm, const ResultsLayout& layout,
                                         const ResultsMetadata& meta) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::vector<int64_t> damaged;
  run_agreed(comm, [&] {
    if (rank != 0) return;
    int64_t version = 0;
    damaged = check_existing(path, layout, meta, version);
    if (version == 3) upgrade_from_version_3(path, layout);
  });
  ResultsFile r(h5::File(), layout);
  run_agreed(comm, [&] {
    r.m_file = h5::File::open_parallel(path, comm);
    r.open_datasets();
  });
  for (int64_t id : damaged) {
    std::fprintf(stderr, "sweep: trial %lld: its row fails its checksum (trials/row_checksum) in %s: the file was "
                 "changed or damaged since it was written; the trial runs again\n", static_cast<long long>(id),
                 path.c_str());
  }
  r.m_damaged = std::move(damaged);
  return r;
}

void ResultsFile::open_datasets() {
  for (const auto& name : row_datasets(m_layout)) m_datasets.emplace(name, m_file.open_dataset(name));
}

void ResultsFile::write_row(const Trial& trial, const TrialResult& r, int rank, const std::string& host) {
  const int64_t id = trial.id;
  const std::string& file = m_file.path();
  auto ds = [&](const std::string& name) { return m_datasets.at("trials/" + name).get(); };
  auto write_double = [&](const char* name, double v) { write_row_raw(ds(name), H5T_NATIVE_DOUBLE, id, 1, &v, file, name); };
  auto write_string = [&](const char* name, const std::string& s, size_t len) {
    auto t = string_type(len);
    std::string p = padded(s, len);
    write_row_raw(ds(name), t.get(), id, 1, p.data(), file, name);
  };
  std::vector<double> curve(static_cast<size_t>(std::max<int64_t>(1, m_layout.max_checks)), std::numeric_limits<double>::quiet_NaN());
  std::copy_n(r.val_curve.begin(), std::min(curve.size(), r.val_curve.size()), curve.begin());
  std::vector<float> corr(static_cast<size_t>(std::max<int64_t>(1, m_layout.n_neurons)), std::numeric_limits<float>::quiet_NaN());
  std::copy_n(r.neuron_correlation.begin(), std::min(corr.size(), r.neuron_correlation.size()), corr.begin());

  StoredRow row;
  row.trial_id = id;
  row.architecture = trial.architecture;
  row.data_fraction = trial.data_fraction;
  row.seed = trial.seed;
  for (const auto& h : m_layout.hyperparameters) {
    auto it = trial.hyperparameters.find(h);
    row.hyperparameters.push_back(it == trial.hyperparameters.end() ? std::numeric_limits<double>::quiet_NaN() : it->second);
  }
  row.status = r.status;
  row.message = r.message;
  row.best_val_loss = r.best_val_loss;
  row.test_correlation = r.test_correlation;
  row.feve = r.feve;
  row.fraction_oracle = r.fraction_oracle;
  row.iterations = r.iterations;
  row.steps = r.steps;
  row.wall_seconds = r.wall_seconds;
  row.rank = rank;
  row.host = host;
  row.val_curve = curve.data();
  row.curve_width = curve.size();
  row.neuron_correlation = corr.data();
  row.n_neurons = corr.size();

  write_double("best_val_loss", r.best_val_loss);
  write_double("test_correlation", r.test_correlation);
  write_double("feve", r.feve);
  write_double("fraction_oracle", r.fraction_oracle);
  write_double("wall_seconds", r.wall_seconds);
  write_row_raw(ds("iterations"), H5T_NATIVE_INT64, id, 1, &r.iterations, file, "iterations");
  write_row_raw(ds("steps"), H5T_NATIVE_INT64, id, 1, &r.steps, file, "steps");
  write_row_raw(ds("rank"), H5T_NATIVE_INT32, id, 1, &row.rank, file, "rank");
  write_string("host", host, kHostLen);
  write_string("message", r.message, kMessageLen);
  write_row_raw(ds("val_curve"), H5T_NATIVE_DOUBLE, id, curve.size(), curve.data(), file, "val_curve");
  write_row_raw(ds("neuron_correlation"), H5T_NATIVE_FLOAT, id, corr.size(), corr.data(), file, "neuron_correlation");

  const uint64_t checksum = row_checksum(row);
  write_row_raw(ds("row_checksum"), H5T_NATIVE_UINT64, id, 1, &checksum, file, "row_checksum");
  const double heartbeat = unix_seconds();
  write_row_raw(ds("heartbeat"), H5T_NATIVE_DOUBLE, id, 1, &heartbeat, file, "heartbeat");
  write_string("status", r.status, kStatusLen);  // last: a row counts as finished only once this lands
}

void ResultsFile::mark_pending(const Trial& trial) {
  auto status_t = string_type(kStatusLen);
  const std::string pending = padded("pending", kStatusLen);
  write_row_raw(m_datasets.at("trials/status").get(), status_t.get(), trial.id, 1, pending.data(), m_file.path(), "status");
}

void ResultsFile::write_running_row(const Trial& trial, const TrialResult& p, int rank, const std::string& host) {
  const int64_t id = trial.id;
  const std::string& file = m_file.path();
  auto ds = [&](const std::string& name) { return m_datasets.at("trials/" + name).get(); };
  std::vector<double> curve(static_cast<size_t>(std::max<int64_t>(1, m_layout.max_checks)), std::numeric_limits<double>::quiet_NaN());
  std::copy_n(p.val_curve.begin(), std::min(curve.size(), p.val_curve.size()), curve.begin());
  const double heartbeat = unix_seconds();
  const int32_t rank32 = rank;
  write_row_raw(ds("best_val_loss"), H5T_NATIVE_DOUBLE, id, 1, &p.best_val_loss, file, "best_val_loss");
  write_row_raw(ds("wall_seconds"), H5T_NATIVE_DOUBLE, id, 1, &p.wall_seconds, file, "wall_seconds");
  write_row_raw(ds("iterations"), H5T_NATIVE_INT64, id, 1, &p.iterations, file, "iterations");
  write_row_raw(ds("steps"), H5T_NATIVE_INT64, id, 1, &p.steps, file, "steps");
  write_row_raw(ds("rank"), H5T_NATIVE_INT32, id, 1, &rank32, file, "rank");
  auto host_t = string_type(kHostLen), status_t = string_type(kStatusLen);
  const std::string host_padded = padded(host, kHostLen), status_padded = padded("running", kStatusLen);
  write_row_raw(ds("host"), host_t.get(), id, 1, host_padded.data(), file, "host");
  write_row_raw(ds("val_curve"), H5T_NATIVE_DOUBLE, id, curve.size(), curve.data(), file, "val_curve");
  write_row_raw(ds("heartbeat"), H5T_NATIVE_DOUBLE, id, 1, &heartbeat, file, "heartbeat");
  write_row_raw(ds("status"), status_t.get(), id, 1, status_padded.data(), file, "status");
}

std::vector<ResultsFile::OkCurve> ResultsFile::read_ok_curves() const {
  const auto n = static_cast<size_t>(m_layout.n_trials);
  const auto width = static_cast<size_t>(std::max<int64_t>(1, m_layout.max_checks));
  h5::Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT);
  auto read = [&](const char* name, hid_t type, void* out) {
    if (n > 0)
      h5::check(H5Dread(m_datasets.at(name).get(), type, H5S_ALL, H5S_ALL, dxpl.get(), out), "H5Dread", m_file.path(), name);
  };
  const auto statuses = read_statuses();
  std::vector<char> arch(n * kArchLen);
  std::vector<double> fraction(n), curves(n * width);
  auto arch_t = string_type(kArchLen);
  read("trials/architecture", arch_t.get(), arch.data());
  read("trials/data_fraction", H5T_NATIVE_DOUBLE, fraction.data());
  read("trials/val_curve", H5T_NATIVE_DOUBLE, curves.data());
  std::vector<OkCurve> out;
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i] != "ok") continue;
    OkCurve c;
    c.architecture.assign(arch.data() + i * kArchLen, kArchLen);
    c.architecture.erase(c.architecture.find_last_not_of('\0') + 1);
    c.data_fraction = fraction[i];
    for (size_t k = 0; k < width && std::isfinite(curves[i * width + k]); ++k) c.curve.push_back(curves[i * width + k]);
    out.push_back(std::move(c));
  }
  return out;
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
  for (int64_t id : m_damaged) out.at(static_cast<size_t>(id)) = "damaged";
  return out;
}

void ResultsFile::close() {
  m_datasets.clear();
  m_file.close();
}

std::vector<int64_t> rows_failing_checksum(const h5::File& f) {
  if (!f.exists("trials/row_checksum")) return {};
  const auto status = f.read_strings("trials/status");
  const auto stored = f.read<uint64_t>("trials/row_checksum");
  const auto ids = f.read<int64_t>("trials/trial_id");
  const auto archs = f.read_strings("trials/architecture");
  const auto fractions = f.read<double>("trials/data_fraction");
  const auto seeds = f.read<int64_t>("trials/seed");
  const auto messages = f.read_strings("trials/message");
  const auto val = f.read<double>("trials/best_val_loss");
  const auto corr = f.read<double>("trials/test_correlation");
  const auto feve = f.read<double>("trials/feve");
  const auto oracle = f.read<double>("trials/fraction_oracle");
  const auto iterations = f.read<int64_t>("trials/iterations");
  // format_version 2 files have no steps column (their trials/iterations held the steps).
  const auto steps = f.exists("trials/steps") ? f.read<int64_t>("trials/steps") : std::vector<int64_t>{};
  const auto wall = f.read<double>("trials/wall_seconds");
  const auto ranks = f.read<int32_t>("trials/rank");
  const auto hosts = f.read_strings("trials/host");
  h5::Shape curve_shape, neuron_shape;
  const auto curves = f.read<double>("trials/val_curve", &curve_shape);
  const auto neurons = f.read<float>("trials/neuron_correlation", &neuron_shape);
  std::vector<std::string> names;
  if (f.exists("trials/hyperparameters")) names = f.list("trials/hyperparameters");
  std::sort(names.begin(), names.end());
  std::vector<std::vector<double>> hyper;
  for (const auto& name : names) hyper.push_back(f.read<double>("trials/hyperparameters/" + name));
  const size_t n = status.size();
  if (stored.size() != n || ids.size() != n || archs.size() != n || messages.size() != n || hosts.size() != n ||
      curve_shape.size() != 2 || neuron_shape.size() != 2 || curve_shape[0] != n || neuron_shape[0] != n) {
    throw DataError("trials/ datasets have different lengths", f.path(), "the file is not a complete v1sysid results file");
  }

  std::vector<int64_t> damaged;
  for (size_t i = 0; i < n; ++i) {
    if (!is_finished_status(status[i])) continue;
    StoredRow row;
    row.trial_id = ids[i];
    row.architecture = archs[i];
    row.data_fraction = fractions.at(i);
    row.seed = seeds.at(i);
    for (const auto& h : hyper) row.hyperparameters.push_back(h.at(i));
    row.status = status[i];
    row.message = messages[i];
    row.best_val_loss = val.at(i);
    row.test_correlation = corr.at(i);
    row.feve = feve.at(i);
    row.fraction_oracle = oracle.at(i);
    row.iterations = iterations.at(i);
    if (!steps.empty()) row.steps = steps.at(i);
    row.wall_seconds = wall.at(i);
    row.rank = ranks.at(i);
    row.host = hosts[i];
    row.curve_width = curve_shape[1];
    row.val_curve = curves.data() + i * row.curve_width;
    row.n_neurons = neuron_shape[1];
    row.neuron_correlation = neurons.data() + i * row.n_neurons;
    if (row_checksum(row) != stored[i]) damaged.push_back(static_cast<int64_t>(i));
  }
  return damaged;
}

}  // namespace v1sysid
