// Dataset I/O: the .npy reader/writer, the StaticImageSet (HDF5) and FileTree (folder and zip) readers on
// fixtures written here in the exact on-disk layouts (data-formats.md §B), every bad input of the foundation
// issue, the reference preprocessing against closed-form values, and area downsampling.
#include "core/error.hpp"
#include "data/dataset.hpp"
#include "data/digest.hpp"
#include "io/h5.hpp"
#include "io/npy.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <zip.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <thread>

namespace v1sysid {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

// Runs `body`, expects it to throw exactly ErrorType, and returns the message for substring checks.
template <class ErrorType, class Body>
std::string expect_error(Body&& body) {
  try {
    body();
  } catch (const ErrorType& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong error type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A header exactly as numpy.save writes it (version 1.0, padded to 64 bytes), followed by `data`.
std::vector<uint8_t> numpy_style_npy(const std::string& dict, const std::vector<uint8_t>& data, int major = 1) {
  std::string header = dict;
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = 8 + len_bytes;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  for (size_t i = 0; i < len_bytes; ++i) out.push_back(static_cast<uint8_t>((header.size() >> (8 * i)) & 0xFF));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

template <class T>
std::vector<uint8_t> raw(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// ---- HDF5 files ------------------------------------------------------------------------------------------

// HDF5 stamps object headers with their creation time (1 s resolution) unless told not to; two files with the
// same content written more than a second apart must still be byte-identical (reproducible outputs).
TEST(Hdf5File, EqualContentWrittenSecondsApartIsByteIdentical) {
  ScratchDir dir;
  auto write = [&](const std::string& name) {
    auto f = h5::File::create(dir / name, false);
    f.write("group/values", std::vector<float>{1, 2, 3, 4}, {2, 2});
    f.write("group/chunked", std::vector<double>(300, 0.5), {100, 3}, 10);
    f.write_strings("names", {"a", "bc"});
    f.write_attribute("/group", "kind", std::string("test"));
    f.commit();
  };
  write("first.h5");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write("second.h5");
  const auto first = file_bytes(dir / "first.h5");
  ASSERT_GT(first.size(), 1000u);
  EXPECT_TRUE(first == file_bytes(dir / "second.h5"));
}

// ---- .npy ------------------------------------------------------------------------------------------------

TEST(Npy, RoundTripsEveryWrittenType) {
  ScratchDir dir;
  npy::save(dir / "f.npy", npy::from_float32({1.5f, -2.f, 3.25f, 0.f, 1e-7f, 255.f}, {2, 3}));
  npy::save(dir / "i.npy", npy::from_int64({-1, 2, 1LL << 40}, {3}));
  npy::save(dir / "u.npy", npy::from_unicode({"train", "validation", "test", "\xC2\xB5m"}, {4}));
  npy::save(dir / "s.npy", npy::from_bytes({"a", "bcd"}, {2}));
  npy::save(dir / "scalar.npy", npy::from_float64({42.5}, {}));

  auto f = npy::read(dir / "f.npy");
  EXPECT_EQ(f.descr(), "<f4");
  EXPECT_EQ(f.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.values<float>(), (std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 1e-7f, 255.f}));
  auto i = npy::read(dir / "i.npy");
  EXPECT_EQ(i.descr(), "<i8");
  EXPECT_EQ(i.values<int64_t>(), (std::vector<int64_t>{-1, 2, 1LL << 40}));
  auto u = npy::read(dir / "u.npy");
  EXPECT_EQ(u.descr(), "<U10");  // longest string: "validation", 10 code points
  EXPECT_EQ(u.strings(), (std::vector<std::string>{"train", "validation", "test", "\xC2\xB5m"}));
  auto s = npy::read(dir / "s.npy");
  EXPECT_EQ(s.descr(), "|S3");
  EXPECT_EQ(s.strings(), (std::vector<std::string>{"a", "bcd"}));
  auto scalar = npy::read(dir / "scalar.npy");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.size(), 1);
  EXPECT_EQ(scalar.values<double>(), std::vector<double>{42.5});
  // numpy aligns the data to 64 bytes; so does the writer.
  EXPECT_EQ((file_bytes(dir / "f.npy").size() - 6 * sizeof(float)) % 64, 0u);
  EXPECT_FALSE(fs::exists(dir / "f.npy.partial"));
}

npy::Array parse_bytes(const std::vector<uint8_t>& bytes, const std::string& where = "mem.npy") {
  return npy::parse(bytes.data(), bytes.size(), where);
}

TEST(Npy, ReadsNumpyHeadersOfAllVersionsAndDtypes) {
  auto f8 = parse_bytes(numpy_style_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }",
                                        raw(std::vector<double>{0.25, -8.0})));
  EXPECT_EQ(f8.shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(f8.values<float>(), (std::vector<float>{0.25f, -8.f}));
  // Versions 2.0 and 3.0 carry a 4-byte header length; 3.0 allows a UTF-8 header.
  for (int major : {2, 3}) {
    auto a = parse_bytes(numpy_style_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                                         raw(std::vector<int32_t>{7, -7, 1 << 30}), major));
    EXPECT_EQ(a.values<int64_t>(), (std::vector<int64_t>{7, -7, 1 << 30})) << "version " << major;
  }
  auto u1 = parse_bytes(numpy_style_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2, 2), }",
                                        {0, 17, 128, 255}));
  EXPECT_EQ(u1.values<float>(), (std::vector<float>{0.f, 17.f, 128.f, 255.f}));
  auto u2 = parse_bytes(numpy_style_npy("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }",
                                        raw(std::vector<uint16_t>{65535, 3})));
  EXPECT_EQ(u2.values<int64_t>(), (std::vector<int64_t>{65535, 3}));
  auto b1 = parse_bytes(numpy_style_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", {1, 0, 1}));
  EXPECT_EQ(b1.values<double>(), (std::vector<double>{1, 0, 1}));
  // 0-d float32, as neuro_data's image statistics are stored.
  auto scalar = parse_bytes(numpy_style_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                                            raw(std::vector<float>{113.5f})));
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.values<double>(), std::vector<double>{113.5});
  // numpy unicode: UTF-32LE code points, NUL-padded to the fixed width.
  std::vector<uint32_t> utf32 = {'t', 'e', 's', 't', 0, 0, 0x3bc, 'm', 0, 0, 0, 0};
  auto u = parse_bytes(numpy_style_npy("{'descr': '<U6', 'fortran_order': False, 'shape': (2,), }", raw(utf32)));
  EXPECT_EQ(u.strings(), (std::vector<std::string>{"test", "\xCE\xBCm"}));
  // Big-endian data is converted on read.
  std::vector<uint8_t> be = {0x3f, 0xc0, 0x00, 0x00, 0xc1, 0x20, 0x00, 0x00};  // 1.5f, -10.f
  EXPECT_EQ(parse_bytes(numpy_style_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be))
                .values<float>(),
            (std::vector<float>{1.5f, -10.f}));
  // Python 2 numpy wrote long integers in the shape.
  auto py2 = parse_bytes(numpy_style_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }",
                                         raw(std::vector<float>{1, 2})));
  EXPECT_EQ(py2.size(), 2);
}

TEST(Npy, RejectsPickledFortranStructuredWrongHeaderAndTruncatedData) {
  auto pickled = numpy_style_npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", {0x80, 0x03});
  EXPECT_CONTAINS(expect_error<DataError>([&] { parse_bytes(pickled, "meta/trials/tiers.npy"); }), "pickled");
  EXPECT_CONTAINS(expect_error<DataError>([&] { parse_bytes(pickled, "meta/trials/tiers.npy"); }),
                  "meta/trials/tiers.npy");
  auto fortran = numpy_style_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                 raw(std::vector<float>{1, 2, 3, 4}));
  EXPECT_CONTAINS(expect_error<DataError>([&] { parse_bytes(fortran); }), "Fortran");
  auto structured = numpy_style_npy("{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (1,), }",
                                    std::vector<uint8_t>(12, 0));
  EXPECT_CONTAINS(expect_error<DataError>([&] { parse_bytes(structured); }), "structured");
  auto complex = numpy_style_npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", std::vector<uint8_t>(8, 0));
  EXPECT_CONTAINS(expect_error<DataError>([&] { parse_bytes(complex); }), "<c8");

  auto good = npy::serialize(npy::from_float32({1, 2, 3, 4}, {4}));
  auto bad_magic = good;
  bad_magic[1] = 'X';
  EXPECT_CONTAINS(expect_error<IoError>([&] { parse_bytes(bad_magic, "data/images/3.npy"); }), "data/images/3.npy");
  auto bad_version = good;
  bad_version[6] = 9;
  EXPECT_CONTAINS(expect_error<IoError>([&] { parse_bytes(bad_version); }), "version 9");
  auto no_shape = numpy_style_npy("{'descr': '<f4', 'fortran_order': False, }", raw(std::vector<float>{1}));
  EXPECT_CONTAINS(expect_error<IoError>([&] { parse_bytes(no_shape); }), "header");
  auto garbled = numpy_style_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ", raw(std::vector<float>{1, 2}));
  garbled[10 + 50] = '?';  // inside the header text
  EXPECT_THROW(parse_bytes(garbled), IoError);
  auto truncated = good;
  truncated.resize(truncated.size() - 3);
  auto message = expect_error<IoError>([&] { parse_bytes(truncated, "data/responses/5.npy"); });
  EXPECT_CONTAINS(message, "truncated");
  EXPECT_CONTAINS(message, "data/responses/5.npy");
  auto header_cut = std::vector<uint8_t>(good.begin(), good.begin() + 20);
  EXPECT_CONTAINS(expect_error<IoError>([&] { parse_bytes(header_cut); }), "truncated");
  EXPECT_THROW(parse_bytes({}), IoError);
  // Numbers asked of strings, and vice versa.
  EXPECT_CONTAINS(expect_error<DataError>([&] { npy::from_unicode({"a"}, {1}).values<float>(); }), "strings");
  EXPECT_CONTAINS(expect_error<DataError>([&] { npy::from_float32({1.f}, {1}).strings(); }), "numbers");
  EXPECT_THROW(npy::from_float32({1.f, 2.f}, {3}), ShapeError);
  // Floating ids must be whole numbers to become int64.
  EXPECT_THROW(npy::from_float32({1.5f}, {1}).values<int64_t>(), DataError);
  EXPECT_EQ(npy::from_float32({3.f}, {1}).values<int64_t>(), std::vector<int64_t>{3});
}

// ---- fixtures in the exact on-disk layouts ----------------------------------------------------------------

// A small recording: 12 train, 4 validation and 8 test trials (4 test images shown twice each).
struct Spec {
  int64_t n_trials = 24, n_neurons = 5, height = 4, width = 6;
  std::vector<float> images;            // [N, H, W]
  std::vector<int64_t> image_shape;     // as written: (N, 1, H, W) by default
  std::vector<float> responses;         // [N, n]
  std::vector<int64_t> response_shape;  // (N, n)
  std::vector<std::string> tiers;
  std::vector<int64_t> image_ids;
  std::string id_field = "frame_image_id";
  std::vector<int64_t> unit_ids;
  std::vector<float> coordinates;       // [n, 3]
  bool write_images = true, write_responses = true, write_tiers = true, write_ids = true;
  bool with_statistics = true, with_ground_truth = false;
  bool variable_length_tiers = false;
};

Spec make_spec() {
  Spec s;
  const int64_t pixels = s.height * s.width;
  s.image_shape = {s.n_trials, 1, s.height, s.width};
  s.response_shape = {s.n_trials, s.n_neurons};
  for (int64_t i = 0; i < s.n_trials; ++i) {
    s.tiers.push_back(i < 12 ? "train" : i < 16 ? "validation" : "test");
    s.image_ids.push_back(i < 16 ? 1000 + i : 2000 + (i - 16) % 4);  // test images 2000..2003, twice each
  }
  s.images.resize(static_cast<size_t>(s.n_trials * pixels));
  for (int64_t i = 0; i < s.n_trials; ++i) {
    for (int64_t k = 0; k < pixels; ++k) {
      s.images[static_cast<size_t>(i * pixels + k)] = static_cast<float>((s.image_ids[static_cast<size_t>(i)] * 7 + k * 13) % 256);
    }
  }
  for (int64_t i = 0; i < s.n_trials; ++i) {
    for (int64_t k = 0; k < s.n_neurons; ++k) s.responses.push_back(0.25f * static_cast<float>((i * 3 + k * 5) % 7));
  }
  for (int64_t k = 0; k < s.n_neurons; ++k) {
    s.unit_ids.push_back(10 + 3 * k);
    for (int c = 0; c < 3; ++c) s.coordinates.push_back(static_cast<float>(100 * k + c));
  }
  return s;
}

std::vector<hsize_t> hshape(const std::vector<int64_t>& s) { return std::vector<hsize_t>(s.begin(), s.end()); }

// Variable-length UTF-8 strings, as h5py writes a list of Python str.
void write_vlen_strings(h5::File& f, const std::string& name, const std::vector<std::string>& values) {
  h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  hsize_t n = values.size();
  h5::Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  h5::Handle d(H5Dcreate2(f.id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
               H5Dclose);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  ASSERT_GE(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), 0);
}

void add_ground_truth_h5(h5::File& f, const Spec& s, bool with_ids) {
  f.write_strings("gt/cell_type", {"simple", "complex", "simple", "dn", "complex"});
  f.write("gt/orientation", std::vector<float>{0.f, 0.5f, 1.f, 1.5f, 3.f}, {5});
  f.write("gt/position", std::vector<float>{0, 0, 1, 1, 2, 3, 4, 5, 2.5f, 1.5f}, {5, 2});
  std::vector<float> rates;
  for (int i = 0; i < 4 * s.n_neurons; ++i) rates.push_back(0.1f * static_cast<float>(i));
  f.write("gt/test_rates", rates, {4, static_cast<hsize_t>(s.n_neurons)});
  if (with_ids) f.write("gt/test_image_ids", std::vector<int64_t>{2003, 2002, 2001, 2000}, {4});
  f.write("gt/ceiling_correlation", std::vector<float>(5, 0.8f), {5});
  f.write("gt/fev", std::vector<float>(5, 0.5f), {5});
}

// neuralpredictors StaticImageSet: float32 arrays, 'S' tiers, item_info/, neurons/, statistics/ (0-d image stats).
std::string write_h5(const Spec& s, const std::string& path, bool gt_with_ids = true) {
  h5::File f = h5::File::create(path, true);
  if (s.write_images) f.write("images", s.images, hshape(s.image_shape));
  if (s.write_responses) f.write("responses", s.responses, hshape(s.response_shape));
  if (s.write_tiers) {
    if (s.variable_length_tiers) {
      write_vlen_strings(f, "tiers", s.tiers);
    } else {
      f.write_strings("tiers", s.tiers);
    }
  }
  if (s.write_ids) f.write("item_info/" + s.id_field, s.image_ids, {s.image_ids.size()});
  f.write_strings("item_info/frame_image_class", std::vector<std::string>(s.tiers.size(), "imagenet"));
  f.write("neurons/unit_ids", std::vector<uint16_t>(s.unit_ids.begin(), s.unit_ids.end()), {s.unit_ids.size()});
  f.write("neurons/cell_motor_coordinates", s.coordinates, {s.coordinates.size() / 3, 3});
  if (s.with_statistics) {
    f.write_scalar("statistics/images/all/mean", 111.5f);
    f.write_scalar("statistics/images/all/std", 60.25f);
    f.write("statistics/responses/all/std", std::vector<float>(static_cast<size_t>(s.n_neurons), 2.f),
            {static_cast<hsize_t>(s.n_neurons)});
    f.write_scalar("statistics/images/stimulus.Frame/mean", 1.f);
  }
  if (s.with_ground_truth) add_ground_truth_h5(f, s, gt_with_ids);
  f.commit();
  return path;
}

// FileTree as neuralpredictors' converter writes it: per-trial (1,H,W) and (n,) float32 files, '<U' string
// arrays under meta/trials, 0-d image statistics, with a mixed-case statistics subset name.
std::string write_tree(const Spec& s, const std::string& root) {
  auto mk = [&](const std::string& rel) {
    fs::create_directories(fs::path(root) / rel);
    return (fs::path(root) / rel).string();
  };
  const std::string images = mk("data/images"), responses = mk("data/responses");
  const std::string trials = mk("meta/trials"), neurons = mk("meta/neurons");
  const int64_t pixels = s.height * s.width;
  const int64_t image_rows = static_cast<int64_t>(s.images.size()) / pixels;
  const int64_t response_rows = s.response_shape[0];
  const int64_t n = s.response_shape[1];
  if (s.write_images) {
    for (int64_t i = 0; i < image_rows; ++i) {
      std::vector<float> v(s.images.begin() + i * pixels, s.images.begin() + (i + 1) * pixels);
      npy::save(images + "/" + std::to_string(i) + ".npy", npy::from_float32(v, {1, s.height, s.width}));
    }
  }
  if (s.write_responses) {
    for (int64_t i = 0; i < response_rows; ++i) {
      std::vector<float> v(s.responses.begin() + i * n, s.responses.begin() + (i + 1) * n);
      npy::save(responses + "/" + std::to_string(i) + ".npy", npy::from_float32(v, {n}));
    }
  }
  if (s.write_tiers) {
    npy::save(trials + "/tiers.npy", npy::from_unicode(s.tiers, {static_cast<int64_t>(s.tiers.size())}));
  }
  if (s.write_ids) {
    npy::save(trials + "/" + s.id_field + ".npy", npy::from_int64(s.image_ids, {static_cast<int64_t>(s.image_ids.size())}));
  }
  npy::save(trials + "/trial_idx.npy", npy::from_unicode(std::vector<std::string>(s.tiers.size(), "a3f9"), {static_cast<int64_t>(s.tiers.size())}));
  npy::save(neurons + "/unit_ids.npy", npy::from_int64(s.unit_ids, {static_cast<int64_t>(s.unit_ids.size())}));
  npy::save(neurons + "/area.npy", npy::from_unicode(std::vector<std::string>(s.unit_ids.size(), "V1"), {static_cast<int64_t>(s.unit_ids.size())}));
  npy::save(neurons + "/cell_motor_coordinates.npy",
            npy::from_float32(s.coordinates, {static_cast<int64_t>(s.coordinates.size() / 3), 3}));
  if (s.with_statistics) {
    const std::string img_stats = mk("meta/statistics/images/all"), rsp_stats = mk("meta/statistics/responses/all");
    const std::string frame_stats = mk("meta/statistics/images/stimulus_Frame");
    npy::save(img_stats + "/mean.npy", npy::from_float32({111.5f}, {}));
    npy::save(img_stats + "/std.npy", npy::from_float32({60.25f}, {}));
    npy::save(frame_stats + "/mean.npy", npy::from_float32({1.f}, {}));
    npy::save(rsp_stats + "/std.npy", npy::from_float32(std::vector<float>(static_cast<size_t>(n), 2.f), {n}));
  }
  return root;
}

// Zips a folder with libzip, under `prefix/` (SENSORIUM archives hold the dataset folder itself).
std::string zip_folder(const std::string& folder, const std::string& zip_path, const std::string& prefix,
                       bool compress) {
  int err = 0;
  zip_t* z = zip_open(zip_path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  EXPECT_NE(z, nullptr);
  std::vector<std::vector<uint8_t>> keep;  // buffers must live until zip_close
  keep.reserve(1000);
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (!entry.is_regular_file()) continue;
    keep.push_back(file_bytes(entry.path().string()));
    const std::string name = prefix + entry.path().lexically_relative(folder).generic_string();
    zip_source_t* src = zip_source_buffer(z, keep.back().data(), keep.back().size(), 0);
    zip_int64_t index = zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE);
    EXPECT_GE(index, 0);
    zip_set_file_compression(z, static_cast<zip_uint64_t>(index), compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  EXPECT_EQ(zip_close(z), 0);
  return zip_path;
}

// Every file under a folder with its size and modification time, to prove the readers write nothing.
std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> snapshot(const std::string& folder) {
  std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> out;
  for (const auto& e : fs::recursive_directory_iterator(folder)) {
    out[e.path().string()] = {e.is_regular_file() ? e.file_size() : 0, e.last_write_time()};
  }
  return out;
}

void expect_matches_spec(const Dataset& d, const Spec& s) {
  EXPECT_EQ(d.n_trials, s.n_trials);
  EXPECT_EQ(d.n_neurons, s.n_neurons);
  EXPECT_EQ(d.height, s.height);
  EXPECT_EQ(d.width, s.width);
  EXPECT_EQ(d.images, s.images);
  EXPECT_EQ(d.responses, s.responses);
  ASSERT_EQ(d.tiers.size(), s.tiers.size());
  for (size_t i = 0; i < s.tiers.size(); ++i) EXPECT_EQ(tier_name(d.tiers[i]), s.tiers[i]) << "trial " << i;
  EXPECT_EQ(d.count(Tier::train), 12);
  EXPECT_EQ(d.count(Tier::validation), 4);
  EXPECT_EQ(d.count(Tier::test), 8);
  EXPECT_EQ(d.count(Tier::final_test), 0);
  EXPECT_EQ(d.unique_images(Tier::test), 4);
  EXPECT_EQ(d.min_repeats(Tier::test), 2);
  EXPECT_EQ(d.unit_ids, s.unit_ids);
  EXPECT_EQ(d.cortical_coordinates, s.coordinates);
}

// ---- StaticImageSet (HDF5) ----------------------------------------------------------------------------------

TEST(StaticImageSet, RoundTripsTheNeuroDataLayout) {
  ScratchDir dir;
  Spec s = make_spec();
  const auto path = write_h5(s, dir / "static20457-5-9-preproc0.h5");
  Dataset d = load_dataset(path);
  expect_matches_spec(d, s);
  EXPECT_EQ(d.image_ids, s.image_ids);  // one image class: ids unchanged
  EXPECT_EQ(d.format, "hdf5");
  EXPECT_EQ(d.data_key, "20457-5-9-0");
  EXPECT_EQ(d.image_id_source, "item_info/frame_image_id");
  ASSERT_TRUE(d.stored_statistics);
  EXPECT_EQ(d.stored_statistics->image_mean.value_or(-1), 111.5);  // "all" preferred over stimulus.Frame
  EXPECT_EQ(d.stored_statistics->image_std.value_or(-1), 60.25);
  EXPECT_EQ(d.stored_statistics->response_std, std::vector<float>(5, 2.f));
  EXPECT_FALSE(d.ground_truth);
}

TEST(StaticImageSet, AcceptsVariableLengthTiersAndThreeDimensionalImages) {
  ScratchDir dir;
  Spec s = make_spec();
  s.variable_length_tiers = true;
  s.image_shape = {s.n_trials, s.height, s.width};
  Dataset d = read_static_image_set(write_h5(s, dir / "x.h5"));
  expect_matches_spec(d, s);
  EXPECT_EQ(d.data_key, "x");
}

TEST(StaticImageSet, ImageIdPrecedenceClassesAndPixelFallback) {
  ScratchDir dir;
  Spec s = make_spec();
  {
    // image_id wins over frame_image_id (SENSORIUM loader order).
    h5::File f = h5::File::create(dir / "both.h5", true);
    f.write("images", s.images, hshape(s.image_shape));
    f.write("responses", s.responses, hshape(s.response_shape));
    f.write_strings("tiers", s.tiers);
    f.write("item_info/frame_image_id", std::vector<int64_t>(24, 5), {24});
    f.write("item_info/image_id", s.image_ids, {24});
    f.commit();
  }
  Dataset both = load_dataset(dir / "both.h5");
  EXPECT_EQ(both.image_id_source, "item_info/image_id");
  EXPECT_EQ(both.image_ids, s.image_ids);

  // Two image classes with overlapping ids stay distinct images.
  {
    h5::File f = h5::File::create(dir / "classes.h5", true);
    f.write("images", s.images, hshape(s.image_shape));
    f.write("responses", s.responses, hshape(s.response_shape));
    f.write_strings("tiers", s.tiers);
    std::vector<int64_t> ids = s.image_ids;
    std::vector<std::string> classes(24, "imagenet");
    ids[23] = 2000;  // same number as the first test image, but another class
    classes[23] = "mei";
    f.write("item_info/frame_image_id", ids, {24});
    f.write_strings("item_info/frame_image_class", classes);
    f.commit();
  }
  Dataset classes = load_dataset(dir / "classes.h5");
  EXPECT_EQ(classes.unique_images(Tier::test), 5);
  EXPECT_EQ(classes.min_repeats(Tier::test), 1);

  // No ids at all: bit-identical images are repeats.
  s.write_ids = false;
  Dataset hashed = load_dataset(write_h5(s, dir / "noids.h5"));
  EXPECT_EQ(hashed.image_id_source, "pixel hash");
  EXPECT_EQ(hashed.unique_images(Tier::test), 4);
  EXPECT_EQ(hashed.min_repeats(Tier::test), 2);
  EXPECT_EQ(hashed.unique_images(Tier::train), 12);
}

TEST(StaticImageSet, ReadsGroundTruthAndDerivesTestImageIds) {
  ScratchDir dir;
  Spec s = make_spec();
  s.with_ground_truth = true;
  Dataset d = load_dataset(write_h5(s, dir / "dv1.h5"));
  ASSERT_TRUE(d.ground_truth);
  EXPECT_EQ(d.ground_truth->cell_type[3], "dn");
  EXPECT_EQ(d.ground_truth->position.size(), 10u);
  EXPECT_EQ(d.ground_truth->test_image_ids, (std::vector<int64_t>{2003, 2002, 2001, 2000}));
  EXPECT_FLOAT_EQ(d.ground_truth->test_rates[7], 0.7f);
  EXPECT_EQ(d.ground_truth->fev, std::vector<float>(5, 0.5f));

  Dataset derived = load_dataset(write_h5(s, dir / "dv1b.h5", false));
  EXPECT_EQ(derived.ground_truth->test_image_ids, (std::vector<int64_t>{2000, 2001, 2002, 2003}));

  // A gt row naming an image the test tier never shows is refused.
  {
    h5::File f = h5::File::open_rw(dir / "dv1.h5");
    H5Ldelete(f.id(), "/gt/test_image_ids", H5P_DEFAULT);
    f.write("gt/test_image_ids", std::vector<int64_t>{2003, 2002, 2001, 1000}, {4});
  }
  auto m = expect_error<DataError>([&] { load_dataset(dir / "dv1.h5"); });
  EXPECT_CONTAINS(m, "gt/test_image_ids");
}

TEST(StaticImageSet, BadInputsNameTheField) {
  ScratchDir dir;
  auto check = [&](const std::string& name, auto&& mutate, const std::vector<std::string>& needles) {
    Spec s = make_spec();
    mutate(s);
    const auto path = write_h5(s, dir / (name + ".h5"));
    auto message = expect_error<DataError>([&] { load_dataset(path); });
    EXPECT_CONTAINS(message, path);
    for (const auto& n : needles) EXPECT_CONTAINS(message, n);
  };
  check("no_images", [](Spec& s) { s.write_images = false; }, {"missing field 'images'"});
  check("no_responses", [](Spec& s) { s.write_responses = false; }, {"missing field 'responses'"});
  check("no_tiers", [](Spec& s) { s.write_tiers = false; }, {"missing field 'tiers'"});
  check("short_responses", [](Spec& s) {
    s.responses.resize(s.responses.size() - static_cast<size_t>(s.n_neurons));
    s.response_shape[0] -= 1;
  }, {"length mismatch", "'responses' has 23"});
  check("long_tiers", [](Spec& s) { s.tiers.push_back("train"); }, {"length mismatch", "'tiers' has 25"});
  check("short_ids", [](Spec& s) { s.image_ids.pop_back(); }, {"length mismatch", "item_info/frame_image_id"});
  check("bogus_tier", [](Spec& s) { s.tiers[5] = "training"; }, {"unknown tier name 'training'", "trial 5", "tiers"});
  check("no_validation", [](Spec& s) {
    for (auto& t : s.tiers) if (t == "validation") t = "train";
  }, {"required tier 'validation' has no trials"});
  check("no_test", [](Spec& s) {
    for (auto& t : s.tiers) if (t == "test") t = "final_test";
  }, {"required tier 'test'"});
  check("nan_image", [](Spec& s) { s.images[7 * 24 + 3] = std::numeric_limits<float>::quiet_NaN(); },
        {"NaN or Inf", "images[7]"});
  check("inf_response", [](Spec& s) { s.responses[9 * 5 + 2] = std::numeric_limits<float>::infinity(); },
        {"NaN or Inf", "responses[9]", "neuron 2"});
  check("colour", [](Spec& s) {
    s.images.resize(s.images.size() * 3);
    s.image_shape = {s.n_trials, 3, s.height, s.width};
  }, {"'images' has 3 channels"});
  check("flat", [](Spec& s) { s.image_shape = {s.n_trials, s.height * s.width}; }, {"'images' has shape (24, 24)"});
  check("vector_responses", [](Spec& s) {
    s.responses.resize(24);
    s.response_shape = {24};
  }, {"'responses' has shape (24,)"});
}

TEST(StaticImageSet, TruncatedAndForeignFilesAreIoErrors) {
  ScratchDir dir;
  const auto good = write_h5(make_spec(), dir / "good.h5");
  auto bytes = file_bytes(good);
  bytes.resize(bytes.size() / 2);
  write_bytes(dir / "half.h5", bytes);
  EXPECT_CONTAINS(expect_error<IoError>([&] { load_dataset(dir / "half.h5"); }), "half.h5");
  write_bytes(dir / "text.h5", {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_CONTAINS(expect_error<IoError>([&] { load_dataset(dir / "text.h5"); }), "not an HDF5 file");
  EXPECT_CONTAINS(expect_error<IoError>([&] { load_dataset(dir / "missing.h5"); }), "not found");
  // Tiers stored as numbers are not tier names.
  {
    h5::File f = h5::File::open_rw(good);
    H5Ldelete(f.id(), "/tiers", H5P_DEFAULT);
    f.write("tiers", std::vector<int64_t>(24, 0), {24});
  }
  EXPECT_CONTAINS(expect_error<DataError>([&] { load_dataset(good); }), "tiers");
}

// ---- FileTree (folder and zip) --------------------------------------------------------------------------------

TEST(FileTree, RoundTripsTheConverterLayoutWithoutWriting) {
  ScratchDir dir;
  Spec s = make_spec();
  const auto root = write_tree(s, dir / "static22564-2-13-preproc0");
  const auto before = snapshot(root);
  Dataset d = load_dataset(root);
  expect_matches_spec(d, s);
  EXPECT_EQ(d.image_ids, s.image_ids);
  EXPECT_EQ(d.format, "filetree");
  EXPECT_EQ(d.data_key, "22564-2-13-0");
  EXPECT_EQ(d.image_id_source, "meta/trials/frame_image_id.npy");
  ASSERT_TRUE(d.stored_statistics);
  EXPECT_EQ(d.stored_statistics->image_mean.value_or(-1), 111.5);
  EXPECT_EQ(d.stored_statistics->response_std, std::vector<float>(5, 2.f));
  EXPECT_EQ(snapshot(root), before);
  EXPECT_FALSE(fs::exists(fs::path(root) / "config.json"));
  // A trailing slash names the same dataset.
  EXPECT_EQ(load_dataset(root + "/").data_key, "22564-2-13-0");
}

TEST(FileTree, CaseInsensitivePathsIdPrecedenceAndGroundTruth) {
  ScratchDir dir;
  Spec s = make_spec();
  s.with_statistics = false;
  const auto root = write_tree(s, dir / "dv1");
  // Only a differently cased statistics subset: still found.
  fs::create_directories(fs::path(root) / "meta/Statistics/Images/ALL");
  npy::save(root + "/meta/Statistics/Images/ALL/Mean.npy", npy::from_float32({7.f}, {}));
  // colorframeprojector_image_id outranks frame_image_id.
  std::vector<int64_t> colour_ids = s.image_ids;
  for (auto& v : colour_ids) v += 1;
  npy::save(root + "/meta/trials/colorframeprojector_image_id.npy", npy::from_int64(colour_ids, {24}));
  fs::create_directories(fs::path(root) / "gt");
  npy::save(root + "/gt/cell_type.npy", npy::from_unicode({"simple", "complex", "simple", "dn", "complex"}, {5}));
  npy::save(root + "/gt/test_rates.npy", npy::from_float32(std::vector<float>(20, 0.5f), {4, 5}));
  npy::save(root + "/gt/position.npy", npy::from_float32(std::vector<float>(10, 1.f), {5, 2}));
  Dataset d = load_dataset(root);
  ASSERT_TRUE(d.stored_statistics);
  EXPECT_EQ(d.stored_statistics->image_mean.value_or(-1), 7.0);
  EXPECT_EQ(d.image_id_source, "meta/trials/colorframeprojector_image_id.npy");
  EXPECT_EQ(d.image_ids, colour_ids);
  ASSERT_TRUE(d.ground_truth);
  EXPECT_EQ(d.ground_truth->cell_type[1], "complex");
  EXPECT_EQ(d.ground_truth->test_image_ids, (std::vector<int64_t>{2001, 2002, 2003, 2004}));
}

TEST(FileTree, ReadsZippedTreesInMemory) {
  ScratchDir dir;
  Spec s = make_spec();
  const auto root = write_tree(s, dir / "src/static22564-2-13-preproc0");
  fs::create_directories(dir / "zips");
  for (bool compress : {false, true}) {
    const auto zip = zip_folder(root, dir / "zips/static22564-2-13-preproc0.zip", "static22564-2-13-preproc0/", compress);
    const auto before = snapshot(dir / "zips");
    Dataset d = load_dataset(zip);
    expect_matches_spec(d, s);
    EXPECT_EQ(d.format, "filetree-zip");
    EXPECT_EQ(d.data_key, "22564-2-13-0");
    EXPECT_EQ(d.image_ids, s.image_ids);
    EXPECT_EQ(snapshot(dir / "zips"), before) << "the reader wrote next to the archive";
  }
  // Entries at the archive root work too, and the extension is not needed (zip magic).
  const auto flat = zip_folder(root, dir / "zips/flat.bin", "", true);
  EXPECT_EQ(load_dataset(flat).n_trials, 24);
  // A truncated archive has no central directory.
  auto bytes = file_bytes(flat);
  bytes.resize(bytes.size() - 40);
  write_bytes(dir / "zips/cut.zip", bytes);
  EXPECT_CONTAINS(expect_error<IoError>([&] { load_dataset(dir / "zips/cut.zip"); }), "cut.zip");
}

// Damages the stored (compressed or not) data of one entry in place, as a bad transfer would: finds the
// entry's local file header by its name and flips a byte near the end of its data, leaving every header intact.
void damage_zip_entry(const std::string& zip_path, const std::string& entry_name) {
  auto bytes = file_bytes(zip_path);
  const auto name = std::search(bytes.begin(), bytes.end(), entry_name.begin(), entry_name.end());
  ASSERT_NE(name, bytes.end()) << entry_name;
  const size_t header = static_cast<size_t>(name - bytes.begin()) - 30;  // local headers precede the directory
  ASSERT_EQ(std::memcmp(bytes.data() + header, "PK\x03\x04", 4), 0);
  auto u16 = [&](size_t at) { return static_cast<size_t>(bytes[at] | bytes[at + 1] << 8); };
  const size_t compressed = u16(header + 18) | u16(header + 20) << 16;
  const size_t data = header + 30 + u16(header + 26) + u16(header + 28);
  ASSERT_GT(compressed, 4u);
  bytes[data + compressed - 3] ^= 0x5A;
  write_bytes(zip_path, bytes);
}

TEST(FileTree, DamagedZipEntriesAreRefusedNamingTheEntry) {
  ScratchDir dir;
  Spec s = make_spec();
  const auto root = write_tree(s, dir / "src/static22564-2-13-preproc0");
  for (bool compress : {false, true}) {
    const std::string zip = dir / (compress ? "deflated.zip" : "stored.zip");
    zip_folder(root, zip, "static22564-2-13-preproc0/", compress);
    ASSERT_EQ(load_dataset(zip).n_trials, 24);
    damage_zip_entry(zip, "static22564-2-13-preproc0/data/responses/7.npy");
    const auto message = expect_error<IoError>([&] { load_dataset(zip); });
    EXPECT_CONTAINS(message, zip + ":static22564-2-13-preproc0/data/responses/7.npy");
    EXPECT_CONTAINS(message, "archive is damaged");
    EXPECT_CONTAINS(message, "download the archive again");
  }
}

TEST(FileTree, BadInputsNameTheFile) {
  ScratchDir dir;
  int counter = 0;
  auto check = [&](auto&& mutate_spec, auto&& mutate_tree, const std::vector<std::string>& needles, bool io) {
    Spec s = make_spec();
    mutate_spec(s);
    const auto root = write_tree(s, dir / ("t" + std::to_string(counter++)));
    mutate_tree(root);
    auto message = io ? expect_error<IoError>([&] { load_dataset(root); })
                      : expect_error<DataError>([&] { load_dataset(root); });
    for (const auto& n : needles) EXPECT_CONTAINS(message, n);
  };
  auto none = [](auto&) {};
  check([](Spec& s) { s.write_images = false; }, none, {"data/images"}, false);
  check([](Spec& s) { s.write_responses = false; }, none, {"data/responses"}, false);
  check([](Spec& s) { s.write_tiers = false; }, none, {"meta/trials/tiers.npy"}, false);
  check([](Spec& s) {
    s.responses.resize(s.responses.size() - 5);
    s.response_shape[0] = 23;
  }, none, {"length mismatch", "data/responses"}, false);
  check([](Spec& s) { s.tiers.pop_back(); }, none, {"length mismatch", "tiers.npy"}, false);
  check([](Spec& s) { s.image_ids.push_back(1); }, none, {"length mismatch", "frame_image_id.npy"}, false);
  check([](Spec& s) { s.tiers[2] = "Train"; }, none, {"unknown tier name 'Train'", "tiers.npy"}, false);
  check([](Spec& s) {
    for (auto& t : s.tiers) if (t == "train") t = "validation";
  }, none, {"required tier 'train' has no trials", "meta/trials/tiers.npy"}, false);
  check([](Spec& s) { s.images[3 * 24] = -std::numeric_limits<float>::infinity(); }, none,
        {"NaN or Inf", "data/images/3.npy"}, false);
  check([](Spec& s) { s.responses[20 * 5] = std::numeric_limits<float>::quiet_NaN(); }, none,
        {"NaN or Inf", "data/responses/20.npy"}, false);
  check(none, [](const std::string& root) { fs::remove(root + "/data/images/11.npy"); },
        {"data/images/11.npy' is missing"}, false);
  check(none, [](const std::string& root) {
    npy::save(root + "/data/images/4.npy", npy::from_float32(std::vector<float>(25, 1.f), {1, 5, 5}));
  }, {"data/images/4.npy", "(1, 5, 5)"}, false);
  check(none, [](const std::string& root) {
    npy::save(root + "/data/images/0.npy", npy::from_float32(std::vector<float>(72, 1.f), {3, 4, 6}));
  }, {"data/images/0.npy", "(3, 4, 6)"}, false);
  // Pickled object arrays: the tiers.npy numpy writes for an object-dtype list.
  check(none, [](const std::string& root) {
    write_bytes(root + "/meta/trials/tiers.npy",
                numpy_style_npy("{'descr': '|O', 'fortran_order': False, 'shape': (24,), }", {0x80, 0x02, '.'}));
  }, {"pickled", "tiers.npy"}, false);
  check(none, [](const std::string& root) {
    write_bytes(root + "/data/responses/7.npy", {'n', 'o', 't', ' ', 'n', 'p', 'y'});
  }, {"data/responses/7.npy", "magic"}, true);
  check(none, [](const std::string& root) {
    auto bytes = file_bytes(root + "/data/images/9.npy");
    bytes.resize(bytes.size() - 10);
    write_bytes(root + "/data/images/9.npy", bytes);
  }, {"data/images/9.npy", "truncated"}, true);
  check(none, [](const std::string& root) {
    write_bytes(root + "/data/responses/1.npy",
                numpy_style_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), ", std::vector<uint8_t>(20, 0)));
  }, {"data/responses/1.npy", "header"}, true);
  // A folder that is not a dataset at all.
  fs::create_directories(dir / "empty");
  EXPECT_CONTAINS(expect_error<DataError>([&] { load_dataset(dir / "empty"); }), "not a FileTree dataset");
}

// ---- shared pieces -------------------------------------------------------------------------------------------

// ---- Dataset identity (data/digest.hpp) -------------------------------------------------------------------------

// A file's digest is what sha256sum prints; a folder's is the documented manifest pipeline; both are cached by path,
// size and modification time (a same-size rewrite with the old time keeps the cached value, a new time does not).
TEST(DatasetDigest, FilesMatchSha256sumFoldersTheManifestAndTheCacheFollowsChanges) {
  v1sysid::testing::ScratchDir dir;
  setenv("V1SYSID_CACHE_DIR", (dir / "cache").c_str(), 1);
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // FIPS 180-2
  const std::string file = dir / "d.h5";
  std::ofstream(file) << "first content";
  auto shell = [](const std::string& c) { return v1sysid::testing::run_shell(c).output.substr(0, 64); };
  EXPECT_EQ(dataset_digest(file), shell("sha256sum " + file));
  namespace fs = std::filesystem;
  fs::create_directories(dir / "tree/meta/neurons");
  std::ofstream(dir / "tree/meta/neurons/unit_ids.npy") << "ids";
  std::ofstream(dir / "tree/b.txt") << "b";
  std::ofstream(dir / "tree/a b.txt") << "with a space";
  EXPECT_EQ(dataset_digest(dir / "tree"),
            shell("cd " + (dir / "tree") +
                  " && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"));
  // The cache: rewritten with the same size and time, the old digest is served (the file is not read again) ...
  const std::string before = dataset_digest(file);
  const auto time = fs::last_write_time(file);
  std::ofstream(file) << "other content";
  fs::last_write_time(file, time);
  EXPECT_EQ(dataset_digest(file), before);
  // ... and with a new time it is read again; the cache keeps one line per path.
  fs::last_write_time(file, time + std::chrono::seconds(5));
  EXPECT_EQ(dataset_digest(file), shell("sha256sum " + file));
  const std::string cached = v1sysid::testing::read_text(dir / "cache/digests.tsv");
  EXPECT_EQ(std::count(cached.begin(), cached.end(), '\n'), 4) << cached;  // d.h5 and the folder's three files
  unsetenv("V1SYSID_CACHE_DIR");
  EXPECT_THROW(dataset_digest(dir / "missing.h5"), IoError);
}

TEST(Dataset, DataKeyFollowsTheSensoriumLoaders) {
  EXPECT_EQ(data_key_from_path("/data/static20457-5-9-preproc0.h5"), "20457-5-9-0");
  EXPECT_EQ(data_key_from_path("static22564-2-13-preproc0.zip"), "22564-2-13-0");
  EXPECT_EQ(data_key_from_path("a/static22564-2-13-preproc0/"), "22564-2-13-0");
  EXPECT_EQ(data_key_from_path("static21067-10-18-GrayImageNet-94c6ff995dac583098847cfecd43e7b6"),
            "21067-10-18-GrayImageNet-94c6ff995dac583098847cfecd43e7b6");
  EXPECT_EQ(data_key_from_path("runs/dv1.h5"), "dv1");
  EXPECT_EQ(data_key_from_path("static.h5"), "static");
}

TEST(Dataset, TierNamesAndRepeatCounts) {
  for (int i = 0; i < kNumTiers; ++i) EXPECT_EQ(parse_tier(tier_name(static_cast<Tier>(i)), "x"), static_cast<Tier>(i));
  EXPECT_CONTAINS(expect_error<DataError>([] { parse_tier("test_mei", "f.h5"); }), "test_mei");
  Dataset d;
  d.tiers = {Tier::test, Tier::train, Tier::test, Tier::test, Tier::test, Tier::test};
  d.image_ids = {4, 9, 4, 5, 4, 5};
  EXPECT_EQ(d.indices(Tier::test), (std::vector<int64_t>{0, 2, 3, 4, 5}));
  EXPECT_EQ(d.unique_images(Tier::test), 2);
  EXPECT_EQ(d.min_repeats(Tier::test), 2);  // image 4 three times, image 5 twice
  EXPECT_EQ(d.unique_images(Tier::validation), 0);
  EXPECT_EQ(d.min_repeats(Tier::validation), 0);
}

// A hand-built dataset with 2 train, 1 validation and 1 test trial of 1 x 2 pixels and 3 neurons.
Dataset tiny_dataset() {
  Dataset d;
  d.source = "memory";
  d.n_trials = 4;
  d.height = 1;
  d.width = 2;
  d.n_neurons = 3;
  d.images = {0, 2, 4, 6, 100, 100, -50, 7};
  d.responses = {1, -5, 1.f, 3, 2, 1.001f, 9, 9, 9, -1, -1, -1};
  d.tiers = {Tier::train, Tier::train, Tier::validation, Tier::test};
  d.image_ids = {0, 1, 2, 3};
  d.unit_ids = {0, 1, 2};
  return d;
}

TEST(Dataset, ValidateChecksInMemoryDatasets) {
  Dataset d = tiny_dataset();
  EXPECT_NO_THROW(validate_dataset(d));
  Dataset wrong = d;
  wrong.unit_ids.pop_back();
  EXPECT_CONTAINS(expect_error<DataError>([&] { validate_dataset(wrong); }), "unit_ids");
  wrong = d;
  wrong.responses[4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_CONTAINS(expect_error<DataError>([&] { validate_dataset(wrong); }), "responses[1]");
  wrong = d;
  wrong.ground_truth = GroundTruth{};
  wrong.ground_truth->orientation = {0.f, 1.f};
  EXPECT_CONTAINS(expect_error<DataError>([&] { validate_dataset(wrong); }), "gt/orientation");
}

// ---- neuron subsets (--neurons) ---------------------------------------------------------------------------

TEST(NeuronSelection, ParsesRangesEvenAndOddAndRejectsBadSpecsNamingTheOption) {
  Dataset d = tiny_dataset();
  d.n_neurons = 6;
  d.unit_ids = {10, 11, 12, 13, 14, 15};
  const auto indices = [&](const std::string& spec) { return parse_neuron_selection(spec, d, "--neurons").indices; };
  EXPECT_EQ(indices("0:3"), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(indices("3:6"), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(indices(":2"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(indices("4:"), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(indices("even"), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(indices("odd"), (std::vector<int64_t>{1, 3, 5}));
  const auto s = parse_neuron_selection("1:3", d, "--neurons");
  EXPECT_EQ(s.spec, "1:3");
  EXPECT_EQ(s.dataset_neurons, 6);
  EXPECT_EQ(s.unit_ids, (std::vector<int64_t>{11, 12}));
  for (const char* bad : {"", "3", "a:b", "-1:3", "1:2:3", " 0:3", "0:7", "3:3", "4:2", "6:", "0x1:3"}) {
    const auto m = expect_error<ConfigError>([&] { parse_neuron_selection(bad, d, "--neurons"); });
    EXPECT_CONTAINS(m, "--neurons '" + std::string(bad) + "'");
    EXPECT_CONTAINS(m, "pass A:B (0 <= A < B <= 6");  // the fix names the valid forms and the range
    EXPECT_CONTAINS(m, "6 neurons");
  }
  d.n_neurons = 1;
  EXPECT_CONTAINS(expect_error<ConfigError>([&] { parse_neuron_selection("odd", d, "--neurons"); }), "no neuron");
}

TEST(NeuronSelection, KeepsEveryPerNeuronFieldAndReappliesOnlyToAMatchingDataset) {
  Dataset d = tiny_dataset();  // 4 trials x 3 neurons
  d.unit_ids = {7, 8, 9};
  d.cortical_coordinates = {0, 0, 0, 1, 1, 1, 2, 2, 2};
  d.stored_statistics = StoredStatistics{};
  d.stored_statistics->response_mean = {0.5f, 1.5f, 2.5f};
  GroundTruth gt;
  gt.cell_type = {"simple", "complex", "center_surround"};
  gt.orientation = {0.1f, 0.2f, 0.3f};
  gt.position = {1, 2, 3, 4, 5, 6};
  gt.test_image_ids = {3};
  gt.test_rates = {0.5f, 0.6f, 0.7f};
  gt.ceiling_correlation = {0.9f, 0.8f, 0.7f};
  gt.fev = {0.3f, 0.2f, 0.1f};
  d.ground_truth = gt;
  const Dataset full = d;
  const NeuronSelection s = parse_neuron_selection("1:3", d, "--neurons");
  keep_neurons(d, s.indices);
  EXPECT_EQ(d.n_neurons, 2);
  EXPECT_EQ(d.responses, (std::vector<float>{-5, 1.f, 2, 1.001f, 9, 9, -1, -1}));
  EXPECT_EQ(d.unit_ids, (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(d.cortical_coordinates, (std::vector<float>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(d.stored_statistics->response_mean, (std::vector<float>{1.5f, 2.5f}));
  EXPECT_TRUE(d.stored_statistics->response_std.empty());
  EXPECT_EQ(d.ground_truth->cell_type, (std::vector<std::string>{"complex", "center_surround"}));
  EXPECT_EQ(d.ground_truth->position, (std::vector<float>{3, 4, 5, 6}));
  EXPECT_EQ(d.ground_truth->test_rates, (std::vector<float>{0.6f, 0.7f}));
  EXPECT_EQ(d.ground_truth->ceiling_correlation, (std::vector<float>{0.8f, 0.7f}));
  EXPECT_EQ(d.ground_truth->fev, (std::vector<float>{0.2f, 0.1f}));
  EXPECT_NO_THROW(validate_dataset(d));
  // Re-applying a recorded selection: the same dataset gets the same subset ...
  Dataset again = full;
  apply_neuron_selection(again, s, "ckpt.h5 (preprocessing/neuron_indices)");
  EXPECT_EQ(again.responses, d.responses);
  EXPECT_EQ(again.ground_truth->fev, d.ground_truth->fev);
  // ... another neuron count or other unit ids are refused, naming the record and the dataset.
  Dataset fewer = full;
  keep_neurons(fewer, {0, 1});
  auto m = expect_error<ShapeError>([&] { apply_neuron_selection(fewer, s, "ckpt.h5 (preprocessing/neuron_indices)"); });
  EXPECT_CONTAINS(m, "neurons 1:3 of a dataset with 3 neurons");
  EXPECT_CONTAINS(m, "ckpt.h5 (preprocessing/neuron_indices)");
  EXPECT_CONTAINS(m, "use the dataset the model was trained on");
  Dataset relabelled = full;
  relabelled.unit_ids = {7, 8, 99};
  m = expect_error<ShapeError>([&] { apply_neuron_selection(relabelled, s, "ckpt.h5"); });
  EXPECT_CONTAINS(m, "unit_id 99");
  // No selection recorded: the dataset is left alone.
  Dataset untouched = full;
  apply_neuron_selection(untouched, NeuronSelection{}, "ckpt.h5");
  EXPECT_EQ(untouched.n_neurons, 3);
  EXPECT_EQ(neuron_columns({1, 2, 3, 4, 5, 6}, 3, {0, 2}), (std::vector<float>{1, 3, 4, 6}));
}

// ---- preprocessing (reference-models.md §3.3) ------------------------------------------------------------------

TEST(Preprocessing, MatchesClosedFormValues) {
  Dataset d = tiny_dataset();
  Preprocessing p = compute_preprocessing(d);
  // Training pixels 0, 2, 4, 6: mean 3, SD sqrt((9 + 1 + 1 + 9) / 4) = sqrt(5) (ddof 0).
  EXPECT_DOUBLE_EQ(p.image_mean, 3.0);
  EXPECT_DOUBLE_EQ(p.image_std, std::sqrt(5.0));
  // Clipped training responses: neuron 0 {1, 3} -> SD 1; neuron 1 {0, 2} -> SD 1; neuron 2 {1, 1.001} ->
  // SD 0.0005 < mean SD / 100 = 0.0067 -> replaced by 1.
  ASSERT_EQ(p.response_std.size(), 3u);
  EXPECT_FLOAT_EQ(p.response_std[0], 1.f);
  EXPECT_FLOAT_EQ(p.response_std[1], 1.f);
  EXPECT_FLOAT_EQ(p.response_std[2], 1.f);

  // Scale neuron 0 so its SD differs from 1: {2, 6} -> SD 2; neuron 2 {1, 1.1} -> SD 0.05 >= (2+1+0.05)/300.
  d.responses[0] = 2;
  d.responses[3] = 6;
  d.responses[5] = 1.1f;
  p = compute_preprocessing(d);
  EXPECT_FLOAT_EQ(p.response_std[0], 2.f);
  EXPECT_NEAR(p.response_std[2], 0.05f, 1e-6);

  std::vector<float> images, responses;
  apply_preprocessing(p, d, images, responses);
  ASSERT_EQ(images.size(), 8u);
  for (size_t k = 0; k < 8; ++k) EXPECT_FLOAT_EQ(images[k], static_cast<float>((d.images[k] - 3.0) / std::sqrt(5.0)));
  // Every tier is transformed with the training statistics; negative responses clip to 0.
  EXPECT_FLOAT_EQ(responses[0], 1.f);          // 2 / 2
  EXPECT_FLOAT_EQ(responses[1], 0.f);          // max(-5, 0) / 1
  EXPECT_FLOAT_EQ(responses[6], 4.5f);         // validation 9 / 2
  EXPECT_NEAR(responses[8], 9 / 0.05, 1e-2);   // validation 9 / 0.05
  EXPECT_FLOAT_EQ(responses[9], 0.f);          // test -1 -> 0

  Dataset flat = tiny_dataset();
  flat.images = {5, 5, 5, 5, 1, 2, 3, 4};
  EXPECT_CONTAINS(expect_error<DataError>([&] { compute_preprocessing(flat); }), "constant");
  Dataset silent = tiny_dataset();
  for (auto& r : silent.responses) r = 0;
  p = compute_preprocessing(silent);
  EXPECT_EQ(p.response_std, std::vector<float>(3, 1.f));  // no division by zero
}

TEST(Preprocessing, DownsamplesByAreaAveraging) {
  Dataset d = tiny_dataset();
  d.n_trials = 1;
  d.height = 4;
  d.width = 6;
  d.images.resize(24);
  for (int k = 0; k < 24; ++k) d.images[static_cast<size_t>(k)] = static_cast<float>(k * k);
  d.ground_truth = GroundTruth{};
  d.ground_truth->position = {0.5f, 0.5f, 3.f, 1.f};
  const auto original = d.images;
  downsample_images(d, 1);
  EXPECT_EQ(d.images, original);
  EXPECT_THROW(downsample_images(d, 4), ConfigError);  // 4 does not divide 6
  EXPECT_THROW(downsample_images(d, 0), ConfigError);
  downsample_images(d, 2);
  ASSERT_EQ(d.height, 2);
  ASSERT_EQ(d.width, 3);
  ASSERT_EQ(d.images.size(), 6u);
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 3; ++x) {
      double s = 0;
      for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) s += original[static_cast<size_t>((2 * y + dy) * 6 + 2 * x + dx)];
      }
      EXPECT_FLOAT_EQ(d.images[static_cast<size_t>(y * 3 + x)], static_cast<float>(s / 4)) << y << "," << x;
    }
  }
  // Pixel-centre coordinates: input 0.5 (between pixels 0 and 1) is the centre of output pixel 0.
  EXPECT_FLOAT_EQ(d.ground_truth->position[0], 0.f);
  EXPECT_FLOAT_EQ(d.ground_truth->position[2], 1.25f);
}

// ---- command line ----------------------------------------------------------------------------------------------

TEST(InfoCommand, PrintsCountsAndFailsCleanly) {
  ScratchDir dir;
  const auto path = write_h5(make_spec(), dir / "static1-2-3-preproc0.h5");
  auto ok = testing::run_v1sysid("info --json " + path);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_CONTAINS(ok.output, "\"trials\":{\"test\":8,\"train\":12,\"validation\":4}");
  EXPECT_CONTAINS(ok.output, "\"image_shape\":[1,4,6]");
  EXPECT_CONTAINS(ok.output, "\"test_images\":4");
  EXPECT_CONTAINS(ok.output, "\"test_repeats\":2");
  EXPECT_CONTAINS(ok.output, "\"data_key\":\"1-2-3-0\"");
  auto text = testing::run_v1sysid("info " + path);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_CONTAINS(text.output, "train 12, validation 4, test 8");

  Spec s = make_spec();
  s.tiers[0] = "bogus";
  const auto bad = write_h5(s, dir / "bad.h5");
  auto fail = testing::run_v1sysid("info --json " + bad);
  EXPECT_NE(fail.exit_code, 0);
  EXPECT_EQ(fail.output.rfind("v1sysid: error: ", 0), 0u) << fail.output;
  EXPECT_EQ(std::count(fail.output.begin(), fail.output.end(), '\n'), 1) << fail.output;
  EXPECT_CONTAINS(fail.output, "bogus");
}

}  // namespace
}  // namespace v1sysid
