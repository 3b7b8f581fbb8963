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

// ---- the columns of trials/ -------------------------------------------------------------------------------
// One table drives the file: create() makes a dataset per column, write_row / write_running_row write a row's
// cells, rows_failing_checksum reads them back, and trials/row_checksum hashes the stored bytes of the hashed
// columns in table order (docs/formats.md gives the same order; analysis/v1analysis.py repeats it).

enum class Kind { int64, int32, uint64, float64, float32, text };
enum class Extent { scalar, curve, neurons, per_hyperparameter };
// Who writes a column: create() (the trial table), write_row (a finished trial), write_row and the live rows of
// write_running_row, or one of the three cells write_row writes last, in this order: checksum, heartbeat, status.
enum class Writer { creation, result, live, checksum, heartbeat, status };

struct FileColumn;
// What a row's cells are computed from.
struct RowSource {
  const Trial& trial;
  const TrialResult& result;
  TrialStatus status;
  int32_t rank;
  const std::string& host;
};
using CellWriter = void (*)(const RowSource&, const FileColumn&, std::string& bytes);

struct Column {
  const char* name;  // under trials/
  Kind kind;
  size_t text_width;  // text: fixed width, NUL-padded
  Extent extent;
  Writer writer;
  bool hashed;            // part of trials/row_checksum
  int64_t since_version;  // results files of older formats lack the column
  double fill;            // numbers: the value of a row nobody wrote yet
  const char* fill_text;  // text: the same
  CellWriter cell;        // appends the stored bytes of one row (nullptr: the writer computes them)
};

// A column as it is in one file: hyperparameter columns expanded, curve and neuron widths known.
struct FileColumn {
  const Column* column;
  std::string path;
  std::string hyperparameter;  // per_hyperparameter columns
  hsize_t width = 1;           // values per row
};

template <class T>
void append(std::string& bytes, const T& value) {
  bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
}
template <class T>
void append_padded(std::string& bytes, const std::vector<T>& values, hsize_t width) {
  for (hsize_t i = 0; i < width; ++i)
    append(bytes, i < values.size() ? values[i] : std::numeric_limits<T>::quiet_NaN());
}
void append_text(std::string& bytes, const std::string& text, const FileColumn& c) {
  bytes += padded(text, c.column->text_width);
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const Column kColumns[] = {
    {"trial_id", Kind::int64, 0, Extent::scalar, Writer::creation, true, 1, 0, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.trial.id); }},
    {"architecture", Kind::text, 64, Extent::scalar, Writer::creation, true, 1, 0, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) { append_text(b, s.trial.architecture, c); }},
    {"data_fraction", Kind::float64, 0, Extent::scalar, Writer::creation, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.trial.data_fraction); }},
    {"seed", Kind::int64, 0, Extent::scalar, Writer::creation, true, 1, 0, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.trial.seed); }},
    {"hyperparameters", Kind::float64, 0, Extent::per_hyperparameter, Writer::creation, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) {
       auto it = s.trial.hyperparameters.find(c.hyperparameter);
       append(b, it == s.trial.hyperparameters.end() ? kNaN : it->second);
     }},
    {"status", Kind::text, 16, Extent::scalar, Writer::status, true, 1, 0, "pending",
     [](const RowSource& s, const FileColumn& c, std::string& b) { append_text(b, std::string(status_name(s.status)), c); }},
    {"message", Kind::text, 256, Extent::scalar, Writer::result, true, 1, 0, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) { append_text(b, s.result.message, c); }},
    {"best_val_loss", Kind::float64, 0, Extent::scalar, Writer::live, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.best_val_loss); }},
    {"test_correlation", Kind::float64, 0, Extent::scalar, Writer::result, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.test_correlation); }},
    {"feve", Kind::float64, 0, Extent::scalar, Writer::result, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.feve); }},
    {"fraction_oracle", Kind::float64, 0, Extent::scalar, Writer::result, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.fraction_oracle); }},
    {"iterations", Kind::int64, 0, Extent::scalar, Writer::live, true, 1, 0, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.iterations); }},
    {"steps", Kind::int64, 0, Extent::scalar, Writer::live, true, 3, 0, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.steps); }},
    {"wall_seconds", Kind::float64, 0, Extent::scalar, Writer::live, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.wall_seconds); }},
    {"rank", Kind::int32, 0, Extent::scalar, Writer::live, true, 1, -1, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.rank); }},
    {"host", Kind::text, 64, Extent::scalar, Writer::live, true, 1, 0, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) { append_text(b, s.host, c); }},
    {"val_curve", Kind::float64, 0, Extent::curve, Writer::live, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) { append_padded(b, s.result.val_curve, c.width); }},
    {"neuron_correlation", Kind::float32, 0, Extent::neurons, Writer::result, true, 1, kNaN, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) { append_padded(b, s.result.neuron_correlation, c.width); }},
    {"best_val_correlation", Kind::float64, 0, Extent::scalar, Writer::live, true, 5, kNaN, "",
     [](const RowSource& s, const FileColumn&, std::string& b) { append(b, s.result.best_val_correlation); }},
    {"val_correlation_curve", Kind::float64, 0, Extent::curve, Writer::live, true, 6, kNaN, "",
     [](const RowSource& s, const FileColumn& c, std::string& b) {
       append_padded(b, s.result.val_correlation_curve, c.width);
     }},
    {"row_checksum", Kind::uint64, 0, Extent::scalar, Writer::checksum, false, 2, 0, "", nullptr},
    {"heartbeat", Kind::float64, 0, Extent::scalar, Writer::heartbeat, false, 4, kNaN, "", nullptr},
};

const Column& column_named(const std::string& name) {
  for (const auto& c : kColumns)
    if (name == c.name) return c;
  throw std::logic_error("results_file.cpp: no column trials/" + name);
}

// The memory (and file) type of a column's values.
h5::Handle value_type(const Column& c) {
  switch (c.kind) {
    case Kind::int64: return h5::Handle(H5Tcopy(H5T_NATIVE_INT64), H5Tclose);
    case Kind::int32: return h5::Handle(H5Tcopy(H5T_NATIVE_INT32), H5Tclose);
    case Kind::uint64: return h5::Handle(H5Tcopy(H5T_NATIVE_UINT64), H5Tclose);
    case Kind::float64: return h5::Handle(H5Tcopy(H5T_NATIVE_DOUBLE), H5Tclose);
    case Kind::float32: return h5::Handle(H5Tcopy(H5T_NATIVE_FLOAT), H5Tclose);
    case Kind::text: break;
  }
  return string_type(c.text_width);
}

size_t value_bytes(const Column& c) {
  switch (c.kind) {
    case Kind::int64: case Kind::uint64: case Kind::float64: return 8;
    case Kind::int32: case Kind::float32: return 4;
    case Kind::text: break;
  }
  return c.text_width;
}

// The bytes of one unwritten value (the dataset's fill value).
std::string fill_bytes(const Column& c) {
  std::string b;
  switch (c.kind) {
    case Kind::int64: append(b, static_cast<int64_t>(c.fill)); break;
    case Kind::int32: append(b, static_cast<int32_t>(c.fill)); break;
    case Kind::uint64: append(b, static_cast<uint64_t>(c.fill)); break;
    case Kind::float64: append(b, c.fill); break;
    case Kind::float32: append(b, static_cast<float>(c.fill)); break;
    case Kind::text: b = padded(c.fill_text, c.text_width); break;
  }
  return b;
}

std::vector<FileColumn> file_columns(const ResultsLayout& l) {
  std::vector<FileColumn> out;
  for (const auto& c : kColumns) {
    const std::string path = std::string("trials/") + c.name;
    switch (c.extent) {
      case Extent::scalar: out.push_back({&c, path, "", 1}); break;
      case Extent::curve: out.push_back({&c, path, "", static_cast<hsize_t>(std::max<int64_t>(1, l.max_checks))}); break;
      case Extent::neurons: out.push_back({&c, path, "", static_cast<hsize_t>(std::max<int64_t>(1, l.n_neurons))}); break;
      case Extent::per_hyperparameter:
        for (const auto& h : l.hyperparameters) out.push_back({&c, path + "/" + h, h, 1});
        break;
    }
  }
  return out;
}

// The cells of one row, column by column (file_columns order), and the row checksum over the hashed ones:
// 64-bit FNV-1a over their stored bytes.
uint64_t fnv1a(uint64_t h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;

std::vector<std::string> row_cells(const std::vector<FileColumn>& columns, const RowSource& source) {
  std::vector<std::string> cells(columns.size());
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i].column->cell) columns[i].column->cell(source, columns[i], cells[i]);
  return cells;
}

uint64_t row_checksum(const std::vector<FileColumn>& columns, const std::vector<std::string>& cells) {
  uint64_t h = kFnvOffset;
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i].column->hashed) h = fnv1a(h, cells[i].data(), cells[i].size());
  return h;
}

// A fixed-width text cell without its NUL padding.
std::string trimmed(std::string text) {
  text.erase(text.find_last_not_of('\0') + 1);
  return text;
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

// Every finished row of a results file with trials/row_checksum: the checksum of its stored cells and the one
// stored. The hashed columns are those of format `version`. A newer column that the file has nevertheless was
// added by an upgrade that stopped before setting format_version; such a row's checksum may be either, so it
// counts as computed when it matches the cells with the newer columns.
struct RowChecksum {
  int64_t row;
  uint64_t computed, stored;
};
std::vector<RowChecksum> stored_row_checksums(const h5::File& f, int64_t version) {
  ResultsLayout layout;
  const h5::Shape status_shape = f.shape("trials/status");
  layout.n_trials = status_shape.empty() ? 0 : static_cast<int64_t>(status_shape[0]);
  layout.max_checks = static_cast<int64_t>(f.shape("trials/val_curve").at(1));
  layout.n_neurons = static_cast<int64_t>(f.shape("trials/neuron_correlation").at(1));
  if (f.exists("trials/hyperparameters")) layout.hyperparameters = f.list("trials/hyperparameters");
  std::sort(layout.hyperparameters.begin(), layout.hyperparameters.end());
  const size_t n = static_cast<size_t>(layout.n_trials);

  // Every column as stored (raw bytes per row); a column newer than `version` that the file lacks is not hashed.
  auto columns = file_columns(layout);
  std::vector<std::string> stored(columns.size());
  std::vector<size_t> row_bytes(columns.size(), 0);
  for (size_t i = 0; i < columns.size(); ++i) {
    const FileColumn& c = columns[i];
    if (!(c.column->hashed || c.column->writer == Writer::checksum || c.column->writer == Writer::status)) continue;
    if (!f.exists(c.path)) {
      if (c.column->since_version > version) continue;
      throw DataError(c.path + " is missing", f.path(), "the file is not a complete v1sysid results file");
    }
    const h5::Shape shape = f.shape(c.path);
    const bool two_d = c.column->extent == Extent::curve || c.column->extent == Extent::neurons;
    if (shape.size() != (two_d ? 2u : 1u) || shape[0] != n || (two_d && shape[1] != c.width)) {
      throw DataError("trials/ datasets have different lengths (" + c.path + ")", f.path(),
                      "the file is not a complete v1sysid results file");
    }
    h5::Handle d = f.open_dataset(c.path);
    row_bytes[i] = value_bytes(*c.column) * c.width;
    stored[i].resize(n * row_bytes[i]);
    if (n > 0)
      h5::check(H5Dread(d.get(), value_type(*c.column).get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, stored[i].data()),
                "H5Dread", f.path(), c.path);
  }
  auto column_of = [&](Writer w) {
    for (size_t i = 0; i < columns.size(); ++i)
      if (columns[i].column->writer == w) return i;
    throw std::logic_error("results_file.cpp: no column for a writer");
  };
  const size_t status_i = column_of(Writer::status), checksum_i = column_of(Writer::checksum);

  std::vector<RowChecksum> out;
  for (size_t i = 0; i < n; ++i) {
    const std::string status = trimmed(stored[status_i].substr(i * row_bytes[status_i], row_bytes[status_i]));
    if (!is_finished(stored_status(status, static_cast<int64_t>(i), f.path()))) continue;
    uint64_t of_version = kFnvOffset, of_all = kFnvOffset;
    for (size_t c = 0; c < columns.size(); ++c) {
      if (!columns[c].column->hashed || row_bytes[c] == 0) continue;
      const char* cell = stored[c].data() + i * row_bytes[c];
      of_all = fnv1a(of_all, cell, row_bytes[c]);
      if (columns[c].column->since_version <= version) of_version = fnv1a(of_version, cell, row_bytes[c]);
    }
    uint64_t expected;
    std::memcpy(&expected, stored[checksum_i].data() + i * sizeof expected, sizeof expected);
    out.push_back({static_cast<int64_t>(i), expected == of_all ? of_all : of_version, expected});
  }
  return out;
}

// Version 3, 4 or 5 -> 6, rank 0, serially, after check_existing found the rows in `damaged` failing their
// checksums: adds the columns the file lacks (trials/heartbeat from 4 on, trials/best_val_correlation from 5 on,
// trials/val_correlation_curve from 6 on, as wide as the file's val_curve; NaN: no row of the file has them),
// gives every other finished row the checksum of its cells under format 6 (the new hashed columns included),
// then sets format_version. The old checksums were verified just before, so a row
// damaged earlier stays damaged and none is blessed. A crash in between leaves a file that reopens: its rows
// verify with or without the added columns (stored_row_checksums), and the next resume redoes every step.
void upgrade_results_file(const std::string& path, const ResultsLayout& layout, int64_t from_version,
                          const std::vector<int64_t>& damaged) {
  h5::File f = h5::File::open_rw(path);
  const hsize_t n = static_cast<hsize_t>(layout.n_trials);
  std::string added;
  for (const auto& c : kColumns) {
    const std::string name = std::string("trials/") + c.name;
    if (c.since_version <= from_version || f.exists(name)) continue;
    const std::string fill = fill_bytes(c);
    std::vector<hsize_t> dims{n};
    if (c.extent == Extent::curve) dims.push_back(f.shape("trials/val_curve").at(1));
    create_dataset(f, name, value_type(c).get(), dims, fill.data());
    added += (added.empty() ? "" : ", ") + name;
  }
  const std::vector<RowChecksum> rows = stored_row_checksums(f, ResultsFile::kFormatVersion);
  std::vector<uint64_t> checksums = f.read<uint64_t>("trials/row_checksum");
  for (const RowChecksum& row : rows)
    if (!std::binary_search(damaged.begin(), damaged.end(), row.row)) checksums.at(static_cast<size_t>(row.row)) = row.computed;
  if (n > 0) {
    h5::Handle d = f.open_dataset("trials/row_checksum");
    errno = 0;
    h5::check_write(H5Dwrite(d.get(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, checksums.data()), "H5Dwrite",
                    path, "trials/row_checksum");
  }
  f.write_attribute("/", "format_version", ResultsFile::kFormatVersion);
  f.close();
  std::fprintf(stderr, "sweep: upgraded %s from results format %lld to %lld (%s)\n", path.c_str(),
               static_cast<long long>(from_version), static_cast<long long>(ResultsFile::kFormatVersion),
               added.empty() ? "its columns were there: an earlier upgrade stopped midway" : ("added " + added).c_str());
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
  if (version < ResultsFile::kOldestUpgradedVersion || version > ResultsFile::kFormatVersion) {
    throw IoError("results file has format version " + std::to_string(version) + "; this v1sysid resumes version " +
                      std::to_string(ResultsFile::kFormatVersion) + " (and upgrades versions " +
                      std::to_string(ResultsFile::kOldestUpgradedVersion) + " to " +
                      std::to_string(ResultsFile::kFormatVersion - 1) + ") only (left unchanged)",
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
    const auto columns = file_columns(layout);
    // Groups first, through File, so that they too are created without timestamps (as every object is).
    f.create_group(layout.hyperparameters.empty() ? "trials" : "trials/hyperparameters");
    for (const auto& c : columns) {
      const std::string fill = fill_bytes(*c.column);
      std::vector<hsize_t> dims{n};
      if (c.column->extent == Extent::curve || c.column->extent == Extent::neurons) dims.push_back(c.width);
      create_dataset(f, c.path, value_type(*c.column).get(), dims, fill.data());
    }

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

    // The trial table: the columns create() writes, every row at once; and every trial's resolved config.
    if (n > 0) {
      const TrialResult none;
      for (const auto& c : columns) {
        if (c.column->writer != Writer::creation) continue;
        std::string values;
        for (const auto& t : trials) c.column->cell(RowSource{t, none, TrialStatus::pending, -1, ""}, c, values);
        h5::Handle d(h5::check_id(H5Dopen2(f.id(), c.path.c_str(), H5P_DEFAULT), "H5Dopen2", path, c.path), H5Dclose);
        errno = 0;
        h5::check_write(H5Dwrite(d.get(), value_type(*c.column).get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
                        "H5Dwrite", path, c.path);
      }
      std::vector<std::string> configs = meta.trial_configs;
      configs.resize(trials.size());
      f.write_strings("trials/config", configs);
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
    if (version < kFormatVersion) upgrade_results_file(path, layout, version, damaged);
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

// The columns of one file (its layout) with their datasets' value types, made once when the file is opened.
struct ResultsColumnTable {
  std::vector<FileColumn> columns;
  std::vector<h5::Handle> types;  // per column
};

void ResultsFile::open_datasets() {
  auto table = std::make_shared<ResultsColumnTable>();
  table->columns = file_columns(m_layout);
  for (const auto& c : table->columns) {
    m_datasets.emplace(c.path, m_file.open_dataset(c.path));
    table->types.push_back(value_type(*c.column));
  }
  m_columns = std::move(table);
}

void ResultsFile::write_cells(int64_t row, const std::vector<std::string>& cells, bool finished) const {
  const auto& columns = m_columns->columns;
  auto write = [&](size_t i, const std::string& bytes) {
    const FileColumn& c = columns[i];
    write_row_raw(m_datasets.at(c.path).get(), m_columns->types[i].get(), row, c.width, bytes.data(), m_file.path(),
                  c.path);
  };
  for (size_t i = 0; i < columns.size(); ++i) {
    const Writer w = columns[i].column->writer;
    if (w == Writer::live || (finished && w == Writer::result)) write(i, cells[i]);
  }
  // Last, in this order: the checksum (finished rows), the heartbeat and the status, so that a row counts as
  // finished (or running) only once everything else has landed.
  for (Writer last : {Writer::checksum, Writer::heartbeat, Writer::status}) {
    for (size_t i = 0; i < columns.size(); ++i) {
      if (columns[i].column->writer != last) continue;
      std::string bytes;
      if (last == Writer::checksum) {
        if (!finished) continue;
        append(bytes, row_checksum(columns, cells));
      } else if (last == Writer::heartbeat) {
        append(bytes, unix_seconds());
      } else {
        bytes = cells[i];
      }
      write(i, bytes);
    }
  }
}

void ResultsFile::write_row(const Trial& trial, const TrialResult& r, int rank, const std::string& host) {
  write_cells(trial.id, row_cells(m_columns->columns, RowSource{trial, r, r.status, rank, host}), true);
}

void ResultsFile::write_running_row(const Trial& trial, const TrialResult& p, int rank, const std::string& host) {
  write_cells(trial.id, row_cells(m_columns->columns, RowSource{trial, p, TrialStatus::running, rank, host}), false);
}

void ResultsFile::mark_pending(const Trial& trial) {
  const Column& status = column_named("status");
  const std::string pending = padded(std::string(status_name(TrialStatus::pending)), status.text_width);
  write_row_raw(m_datasets.at("trials/status").get(), value_type(status).get(), trial.id, 1, pending.data(),
                m_file.path(), "trials/status");
}

// Reads a whole column (independent) as stored: value_bytes(column) x width bytes per row.
std::string ResultsFile::read_column(const std::string& name) const {
  const Column& c = column_named(name);
  const std::string path = "trials/" + name;
  const hid_t d = m_datasets.at(path).get();
  h5::Handle space(H5Dget_space(d), H5Sclose);
  std::string raw(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())) * value_bytes(c), '\0');
  h5::Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_INDEPENDENT);
  if (!raw.empty())
    h5::check(H5Dread(d, value_type(c).get(), H5S_ALL, H5S_ALL, dxpl.get(), raw.data()), "H5Dread", m_file.path(), path);
  return raw;
}

std::vector<ResultsFile::OkCurve> ResultsFile::read_ok_curves() const {
  const auto n = static_cast<size_t>(m_layout.n_trials);
  const auto width = static_cast<size_t>(std::max<int64_t>(1, m_layout.max_checks));
  const auto statuses = read_statuses();
  const std::string arch = read_column("architecture"), fraction = read_column("data_fraction"),
                    curves = read_column("val_curve"), correlations = read_column("val_correlation_curve");
  const size_t arch_width = column_named("architecture").text_width;
  // Row i of a curve column up to its first NaN (the padding).
  auto finite_prefix = [width](const std::string& column, size_t i) {
    std::vector<double> values;
    for (size_t k = 0; k < width; ++k) {
      double v;
      std::memcpy(&v, column.data() + (i * width + k) * sizeof(double), sizeof v);
      if (!std::isfinite(v)) break;
      values.push_back(v);
    }
    return values;
  };
  std::vector<OkCurve> out;
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i] != TrialStatus::ok) continue;
    OkCurve c;
    c.architecture = trimmed(arch.substr(i * arch_width, arch_width));
    std::memcpy(&c.data_fraction, fraction.data() + i * sizeof(double), sizeof(double));
    c.curve = finite_prefix(curves, i);
    c.correlation_curve = finite_prefix(correlations, i);
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<TrialStatus> ResultsFile::read_statuses() const {
  const std::string raw = read_column("status");
  const size_t width = column_named("status").text_width;
  std::vector<TrialStatus> out;
  for (int64_t i = 0; i < m_layout.n_trials; ++i)
    out.push_back(stored_status(trimmed(raw.substr(static_cast<size_t>(i) * width, width)), i, m_file.path()));
  for (int64_t id : m_damaged) out.at(static_cast<size_t>(id)) = TrialStatus::damaged;
  return out;
}

void ResultsFile::close() {
  m_datasets.clear();
  m_file.close();
}

std::vector<int64_t> rows_failing_checksum(const h5::File& f) {
  if (!f.exists("trials/row_checksum")) return {};
  std::vector<int64_t> damaged;
  for (const RowChecksum& row : stored_row_checksums(f, f.read_attribute_int("/", "format_version")))
    if (row.computed != row.stored) damaged.push_back(row.row);
  return damaged;
}

}  // namespace v1sysid
