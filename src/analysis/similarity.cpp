#include "analysis/similarity.hpp"

#include "core/error.hpp"
#include "core/progress.hpp"
#include "io/h5.hpp"

#include <KokkosBlas3_gemm.hpp>

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace v1sysid {

namespace {

using Unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
using U2f = Kokkos::View<Real**, Kokkos::LayoutRight, MemSpace, Unmanaged>;
using U2cf = Kokkos::View<const Real**, Kokkos::LayoutRight, MemSpace, Unmanaged>;

}  // namespace

ImageSet read_image_set(const std::string& path) {
  auto f = h5::File::open(path);
  if (!f.exists("images"))
    throw DataError("no 'images' dataset", path,
                    "give a stimuli file of 'v1sysid images' or a StaticImageSet .h5 (images [n, 1, H, W])");
  h5::Shape shape;
  std::vector<float> all = f.read<float>("images", &shape);
  ImageSet s;
  if (shape.size() == 3) {
    s.count = static_cast<int64_t>(shape[0]);
    s.height = static_cast<int64_t>(shape[1]);
    s.width = static_cast<int64_t>(shape[2]);
    s.images = std::move(all);
    for (int64_t i = 0; i < s.count; ++i) s.image_ids.push_back(i);
    s.id_source = "row";
  } else if (shape.size() == 4 && shape[1] == 1) {
    const auto n = static_cast<int64_t>(shape[0]);
    s.height = static_cast<int64_t>(shape[2]);
    s.width = static_cast<int64_t>(shape[3]);
    std::vector<int64_t> ids;
    if (f.exists("item_info/frame_image_id")) {
      ids = f.read<int64_t>("item_info/frame_image_id");
      if (static_cast<int64_t>(ids.size()) != n)
        throw DataError("item_info/frame_image_id has " + std::to_string(ids.size()) + " entries for " +
                            std::to_string(n) + " images",
                        path, "write one image id per trial");
      s.id_source = "item_info/frame_image_id";
    } else {
      for (int64_t i = 0; i < n; ++i) ids.push_back(i);
      s.id_source = "row";
    }
    const auto pixels = static_cast<size_t>(s.height * s.width);
    std::unordered_set<int64_t> seen;
    for (int64_t i = 0; i < n; ++i) {
      if (!seen.insert(ids[static_cast<size_t>(i)]).second) continue;
      s.image_ids.push_back(ids[static_cast<size_t>(i)]);
      s.images.insert(s.images.end(), all.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(i) * pixels),
                      all.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(i + 1) * pixels));
    }
    s.count = static_cast<int64_t>(s.image_ids.size());
  } else {
    throw DataError("'images' has " + std::to_string(shape.size()) + " dimensions", path,
                    "expected [I, H, W] (v1sysid images) or [n, 1, H, W] (StaticImageSet)");
  }
  if (s.count < 2) throw DataError("fewer than 2 images", path, "a similarity matrix needs at least 2 images");
  return s;
}

namespace {

void check_image_size(const Model<Real>& model, const ImageSet& images) {
  if (images.height != model.height() || images.width != model.width())
    throw ShapeError("the images are " + std::to_string(images.height) + " x " + std::to_string(images.width) +
                         " but the model was built for " + std::to_string(model.height()) + " x " +
                         std::to_string(model.width()),
                     "--images", "use images of the size the model was trained on");
}

// Predictions [b, N] (stored units) of the b images at `pixels_in` ([b, H, W], grey levels) into `out`.
void predict_batch(Model<Real>& model, const Preprocessing& p, ModelWorkspace<Real>& ws, const float* pixels_in,
                   int b, int readout, float* out) {
  const int64_t N = model.readout_spec(readout).n_neurons;
  const int64_t pixels = static_cast<int64_t>(model.height()) * model.width();
  auto in_host = Kokkos::create_mirror_view(ws.images);
  for (int64_t k = 0; k < b * pixels; ++k)
    in_host(static_cast<size_t>(k)) = static_cast<Real>((pixels_in[k] - p.image_mean) / p.image_std);
  Kokkos::deep_copy(ws.images, in_host);
  model.forward(ws, b, false, readout);
  auto out_host = Kokkos::create_mirror_view(ws.prediction);
  Kokkos::deep_copy(out_host, ws.prediction);
  for (int r = 0; r < b; ++r)
    for (int64_t n = 0; n < N; ++n)
      out[r * N + n] = out_host(static_cast<size_t>(r * N + n)) * p.response_std[static_cast<size_t>(n)];
}

}  // namespace

std::vector<float> predict_images(Model<Real>& model, const Preprocessing& p, const ImageSet& images, int batch,
                                  int readout) {
  check_image_size(model, images);
  const int64_t N = model.readout_spec(readout).n_neurons, pixels = images.height * images.width;
  const int B = static_cast<int>(std::min<int64_t>(std::max(batch, 1), images.count));
  auto ws = model.make_workspace(B);
  std::vector<float> out(static_cast<size_t>(images.count * N));
  for (int64_t i0 = 0; i0 < images.count; i0 += B) {
    const int b = static_cast<int>(std::min<int64_t>(B, images.count - i0));
    predict_batch(model, p, ws, images.images.data() + i0 * pixels, b, readout, out.data() + i0 * N);
  }
  return out;
}

int64_t write_similarity(Model<Real>& model, const Preprocessing& p, const ImageSet& images, const std::string& out,
                         const SimilarityOptions& o) {
  if (o.block < 1) throw ConfigError("--block must be positive", "v1sysid similarity", "use e.g. 1024");
  const int64_t I = images.count, N = model.readout_spec(o.readout).n_neurons, pixels = images.height * images.width;
  auto file = h5::File::create(out, o.force);  // fails early on an existing file

  // Z [I, N]: predictions of one batch at a time, z-scored per image (double accumulation) into Z.
  View2<Real> Z("v1sysid::similarity::Z", static_cast<size_t>(I), static_cast<size_t>(N));
  auto Z_host = Kokkos::create_mirror_view(Z);
  std::vector<float> mean_prediction(static_cast<size_t>(I));
  int64_t constant = 0;
  check_image_size(model, images);
  const int64_t predict_batch_size = std::min<int64_t>(128, I);
  auto ws = model.make_workspace(static_cast<int>(predict_batch_size));
  std::vector<float> pred(static_cast<size_t>(predict_batch_size * N));
  Progress progress("similarity: predictions", I);
  for (int64_t i0 = 0; i0 < I; i0 += predict_batch_size) {
    const int64_t b = std::min(predict_batch_size, I - i0);
    predict_batch(model, p, ws, images.images.data() + i0 * pixels, static_cast<int>(b), o.readout, pred.data());
    for (int64_t r = 0; r < b; ++r) {
      const float* row = pred.data() + r * N;
      double sum = 0, sq = 0;
      for (int64_t n = 0; n < N; ++n) sum += row[n];
      const double mean = sum / static_cast<double>(N);
      for (int64_t n = 0; n < N; ++n) sq += (row[n] - mean) * (row[n] - mean);
      const double norm = std::sqrt(sq);  // = sd * sqrt(N) with ddof 0
      mean_prediction[static_cast<size_t>(i0 + r)] = static_cast<float>(mean);
      const bool flat = !(norm > 1e-12 * std::max(1.0, std::fabs(mean)) * std::sqrt(static_cast<double>(N)));
      if (flat) ++constant;
      for (int64_t n = 0; n < N; ++n)
        Z_host(static_cast<size_t>(i0 + r), static_cast<size_t>(n)) =
            flat ? Real(0) : static_cast<Real>((row[n] - mean) / norm);
    }
    progress.update(i0 + b);
  }
  progress.finish();
  Kokkos::deep_copy(Z, Z_host);

  // rsm [I, I], chunked by (block rows x up to 1024 columns) so each row-block write fills whole chunks.
  const auto block = static_cast<int64_t>(std::min<int64_t>(o.block, I));
  const hsize_t dims[2] = {static_cast<hsize_t>(I), static_cast<hsize_t>(I)};
  const hsize_t chunk[2] = {static_cast<hsize_t>(block), static_cast<hsize_t>(std::min<int64_t>(I, 1024))};
  h5::Handle file_space(h5::check_id(H5Screate_simple(2, dims, nullptr), "H5Screate_simple", out, "rsm"), H5Sclose);
  h5::Handle dcpl = h5::untimed_create_plist(H5P_DATASET_CREATE);
  h5::check(H5Pset_chunk(dcpl.get(), 2, chunk), "H5Pset_chunk", out, "rsm");
  h5::Handle dset(h5::check_id(H5Dcreate2(file.id(), "rsm", H5T_IEEE_F32LE, file_space.get(), H5P_DEFAULT,
                                          dcpl.get(), H5P_DEFAULT),
                               "H5Dcreate2", out, "rsm"),
                  H5Dclose);
  View2<Real> S("v1sysid::similarity::S", static_cast<size_t>(block), static_cast<size_t>(I));
  auto S_host = Kokkos::create_mirror_view(S);
  Progress rows("similarity: matrix rows", I);
  for (int64_t i0 = 0; i0 < I; i0 += block) {
    const int64_t b = std::min(block, I - i0);
    U2cf Zb(Z.data() + i0 * N, static_cast<size_t>(b), static_cast<size_t>(N));
    U2f Sb(S.data(), static_cast<size_t>(b), static_cast<size_t>(I));
    KokkosBlas::gemm("N", "T", Real(1), Zb, U2cf(Z.data(), static_cast<size_t>(I), static_cast<size_t>(N)), Real(0),
                     Sb);
    Kokkos::deep_copy(S_host, S);
    const hsize_t start[2] = {static_cast<hsize_t>(i0), 0};
    const hsize_t count[2] = {static_cast<hsize_t>(b), static_cast<hsize_t>(I)};
    h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr),
              "H5Sselect_hyperslab", out, "rsm");
    h5::Handle mem_space(h5::check_id(H5Screate_simple(2, count, nullptr), "H5Screate_simple", out, "rsm"), H5Sclose);
    h5::check(H5Dwrite(dset.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(), H5P_DEFAULT, S_host.data()),
              "H5Dwrite", out, "rsm");
    rows.update(i0 + b);
  }
  rows.finish();
  dset.reset();
  file.write("image_ids", images.image_ids, {static_cast<hsize_t>(I)});
  file.write("mean_prediction", mean_prediction, {static_cast<hsize_t>(I)});
  file.write_attribute("/", "format_version", int64_t{1});
  file.write_attribute("/", "kind", std::string("v1sysid representational similarity"));
  file.write_attribute("/", "checkpoint", o.checkpoint_path);
  file.write_attribute("/", "image_id_source", images.id_source);
  file.write_attribute("/", "n_neurons", N);
  file.write_attribute("/", "constant_images", constant);
  file.write_attribute("/", "definition",
                       std::string("Pearson correlation over neurons between the predicted population responses "
                                   "(stored response units) of two images; 0 for an image with a constant prediction"));
  file.commit();
  return constant;
}

}  // namespace v1sysid
