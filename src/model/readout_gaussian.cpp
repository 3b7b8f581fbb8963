// The Gaussian readout of Lurz et al. 2021 (neuralpredictors FullGaussian2d; reference-models.md §5.1):
//   h[b,n] = sum_c F[n,c] X[b,c](pos[b,n]) + bias[n],  pos = mu + sigma z (training, z ~ N(0, I)) or mu (eval)
//   prediction = ELU(h) + 1
// Slots: mu [N, 2] (absent with the cortex predictor), sigma [N, 2, 2], features [N, C], bias [N]; with
// grid_predictor cortex grid_A [2, 2], grid_a [2] and the buffer grid_coords [N, 2] (normalised cortical
// coordinates), mu = A s + a. Initialisation: mu ~ U(+-init_mu_range), sigma ~ U(+-init_sigma), features ~
// N(0, 1e-3), bias = mean training response, A = 0.2 x a random orthogonal matrix, a ~ N(0, 1e-3). A training
// forward first projects mu onto [-1, 1] (the reference clamps mu in place) and draws the position noise from the
// seed the model passes. Regulariser: feature_weight * sum |features| (gamma_readout).
#include "model/readout.hpp"

#include "core/error.hpp"
#include "layers/gaussian_readout.hpp"
#include "layers/regularizers.hpp"

#include <algorithm>
#include <cmath>

namespace v1sysid {

namespace {

using namespace model_views;

// mu <- clamp(mu, -1, 1) in place (the reference's projection of mu at every forward).
template <class T>
void clamp_unit_in_place(View1<T> v) {
  Kokkos::parallel_for(
      "v1sysid::model::clamp_mu", Kokkos::RangePolicy<ExecSpace>(0, v.extent(0)), KOKKOS_LAMBDA(const size_t i) {
        const T x = v(i);
        v(i) = x < T(-1) ? T(-1) : (x > T(1) ? T(1) : x);
      });
}

// Buffer positions of buffer_sizes.
enum Buffer { noise = 0, grid = 1, mu = 2, d_mu = 3 };

template <class T>
class GaussianReadout final : public Readout<T> {
 public:
  using Buffers = typename Readout<T>::Buffers;

  GaussianReadout(const ReadoutConfig& config, ReadoutPlace place) : Readout<T>(std::move(place)), m_config(config) {}

  void add_slots(ParamArena<T>& arena) override {
    const auto& p = this->place();
    const std::string prefix = p.slot_prefix();
    if (m_config.grid_predictor == "cortex") {
      m_grid_A = arena.add(prefix + "grid_A", 2, 2);
      m_grid_a = arena.add(prefix + "grid_a", 2);
      m_grid_coords = arena.add_buffer(prefix + "grid_coords", p.n_neurons, 2);
    } else {
      m_mu = arena.add(prefix + "mu", p.n_neurons, 2);
    }
    m_sigma = arena.add(prefix + "sigma", p.n_neurons, 2, 2);
    m_features = arena.add(prefix + "features", p.n_neurons, p.channels);
    m_bias = arena.add(prefix + "bias", p.n_neurons);
  }

  void initialize(ParamArena<T>& arena, SplitMix64& rng, const ReadoutInit& init) const override {
    const int N = this->n_neurons();
    if (m_grid_coords >= 0) {
      const auto& xyz = init.cortical_coordinates;
      const std::string& key = this->place().key;
      if (xyz.size() != static_cast<size_t>(N) * 3)
        throw ConfigError("readout.grid_predictor cortex needs neurons/cell_motor_coordinates [" + std::to_string(N) +
                              ", 3], the dataset has " + std::to_string(xyz.size()) + " values",
                          key.empty() ? std::string("the dataset") : "dataset '" + key + "'",
                          "use grid_predictor: none for data without cortical coordinates");
      // s = coordinates[:, :2] - mean, divided by max |.| (neuralpredictors' cortex source grid).
      double mean[2] = {0, 0}, max_abs = 0;
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < 2; ++i) mean[i] += xyz[size_t(n) * 3 + size_t(i)] / double(N);
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < 2; ++i) max_abs = std::max(max_abs, std::fabs(xyz[size_t(n) * 3 + size_t(i)] - mean[i]));
      if (max_abs <= 0) max_abs = 1;
      fill_with(arena, m_grid_coords, [&](size_t k) { return (xyz[(k / 2) * 3 + k % 2] - mean[k % 2]) / max_abs; });
      const double angle = 6.283185307179586 * rng.uniform();
      const double reflect = rng.uniform() < 0.5 ? -1.0 : 1.0;
      const double c = std::cos(angle), sn = std::sin(angle);
      const double A[4] = {0.2 * c, -0.2 * sn * reflect, 0.2 * sn, 0.2 * c * reflect};  // 0.2 x orthogonal
      fill_with(arena, m_grid_A, [&](size_t k) { return A[k]; });
      fill_with(arena, m_grid_a, [&](size_t) { return rng.normal() * 1e-3; });
    } else {
      fill_with(arena, m_mu, [&](size_t) { return (2 * rng.uniform() - 1) * m_config.init_mu_range; });
    }
    fill_with(arena, m_sigma, [&](size_t) { return (2 * rng.uniform() - 1) * m_config.init_sigma; });
    fill_with(arena, m_features, [&](size_t) { return rng.normal() * 1e-3; });
    fill_with(arena, m_bias, [&](size_t n) { return init.mean_response[n]; });
  }

  std::vector<int> slots() const override { return {m_mu, m_sigma, m_grid_A, m_grid_a, m_features, m_bias}; }

  ReadoutBufferSizes buffer_sizes(int capacity) const override {
    const auto B = static_cast<size_t>(capacity), N = static_cast<size_t>(this->n_neurons());
    ReadoutBufferSizes sizes(4);
    sizes[noise] = B * N * 2;
    sizes[grid] = B * N * 2;
    sizes[mu] = N * 2;
    sizes[d_mu] = N * 2;
    return sizes;
  }

  layers::OutputNonlinearity output_nonlinearity() const override {
    return layers::OutputNonlinearity::elu_plus_one;
  }
  bool draws_noise() const override { return true; }

  void forward(ExecSpace const& space, const ParamArena<T>& arena, const Buffers& buffers, int batch, bool training,
               std::uint64_t noise_seed, U4<const T> core_out, U2<T> h) const override {
    const int N = this->n_neurons();
    if (m_mu >= 0 && training) clamp_unit_in_place(arena.param_flat(m_mu));
    if (m_grid_A >= 0)
      layers::grid_predictor_forward<T>(space, arena.template param<2>(m_grid_A), arena.param_flat(m_grid_a),
                                        arena.template param<2>(m_grid_coords), U2<T>(buffers[mu].data(), N, 2));
    const auto gs = shape(batch);
    U3<T> z;
    if (training) {
      z = U3<T>(buffers[noise].data(), batch, N, 2);
      layers::gaussian_readout_draw_noise<T>(space, gs, noise_seed, z);
    }
    layers::gaussian_readout_forward<T>(space, gs, mu_view(arena, buffers), arena.template param<3>(m_sigma),
                                        arena.template param<2>(m_features), arena.param_flat(m_bias), core_out, z,
                                        U3<T>(buffers[grid].data(), batch, N, 2), h);
  }

  void backward(ExecSpace const& space, const ParamArena<T>& arena, const Buffers& buffers, int batch, bool training,
                U4<const T> core_out, U2<const T> d_h, U4<T> d_core) const override {
    const int N = this->n_neurons();
    U2<T> d_mu_view;
    if (m_mu >= 0) {
      d_mu_view = arena.template grad<2>(m_mu);
    } else {
      d_mu_view = U2<T>(buffers[d_mu].data(), N, 2);
      Kokkos::deep_copy(space, d_mu_view, T(0));
    }
    U3<const T> z;  // evaluation: positions at mu
    if (training) z = U3<const T>(buffers[noise].data(), batch, N, 2);
    layers::gaussian_readout_backward<T>(space, shape(batch), mu_view(arena, buffers), arena.template param<3>(m_sigma),
                                         arena.template param<2>(m_features), core_out, z,
                                         U3<const T>(buffers[grid].data(), batch, N, 2), d_h, d_core, d_mu_view,
                                         arena.template grad<3>(m_sigma), arena.template grad<2>(m_features),
                                         arena.grad_flat(m_bias));
    if (m_grid_A >= 0)
      layers::grid_predictor_backward<T>(space, arena.template param<2>(m_grid_coords), U2<const T>(d_mu_view),
                                         arena.template grad<2>(m_grid_A), arena.grad_flat(m_grid_a));
  }

  double regularization(ExecSpace const& space, const ParamArena<T>& arena, bool with_grad) const override {
    if (with_grad)
      return layers::l1_grad(space, arena.param_flat(m_features), m_config.feature_weight, arena.grad_flat(m_features));
    return layers::l1_value(space, arena.param_flat(m_features), m_config.feature_weight);
  }

  std::vector<float> positions(const ParamArena<T>& arena) const override {
    const int N = this->n_neurons();
    auto host = [&](int slot) { return Kokkos::create_mirror_view_and_copy(HostSpace(), arena.param_flat(slot)); };
    std::vector<float> out(static_cast<size_t>(N) * 2);
    if (m_mu >= 0) {
      auto m = host(m_mu);
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(m(i));
    } else {
      auto A = host(m_grid_A), a = host(m_grid_a), s = host(m_grid_coords);
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < 2; ++i)
          out[size_t(n) * 2 + size_t(i)] = static_cast<float>(A(2 * i) * s(2 * n) + A(2 * i + 1) * s(2 * n + 1) + a(i));
    }
    return out;
  }

  ExportGroup export_group(const ParamArena<T>& arena) const override {
    const auto N = static_cast<std::uint64_t>(this->n_neurons());
    ExportGroup g;
    g.tensors.push_back({"mu", positions(arena), {N, 2}});  // (x, y) in [-1, 1], grid_sample convention
    g.tensors.push_back({"sigma", slot_values_host(arena, m_sigma), {N, 2, 2}});
    g.tensors.push_back({"features", slot_values_host(arena, m_features), slot_shape_of(arena, m_features)});
    g.tensors.push_back({"bias", slot_values_host(arena, m_bias), slot_shape_of(arena, m_bias)});
    g.text_attributes.push_back({"kind", "gaussian"});
    g.int_attributes.push_back({"align_corners", 1});
    return g;
  }

 private:
  layers::GaussianReadoutShape shape(int batch) const {
    const auto& p = this->place();
    return layers::GaussianReadoutShape{batch, p.channels, p.height, p.width, p.n_neurons};
  }
  // mu: the parameter slot, or the predictor's output in the mu buffer.
  U2<const T> mu_view(const ParamArena<T>& arena, const Buffers& buffers) const {
    if (m_mu >= 0) return arena.template param<2>(m_mu);
    return U2<const T>(buffers[mu].data(), this->n_neurons(), 2);
  }

  ReadoutConfig m_config;
  int m_mu = -1, m_sigma = -1, m_features = -1, m_bias = -1;
  int m_grid_A = -1, m_grid_a = -1, m_grid_coords = -1;
};

}  // namespace

template <class T>
std::unique_ptr<Readout<T>> make_gaussian_readout(const ReadoutConfig& config, ReadoutPlace place) {
  return std::make_unique<GaussianReadout<T>>(config, std::move(place));
}

template std::unique_ptr<Readout<float>> make_gaussian_readout<float>(const ReadoutConfig&, ReadoutPlace);
template std::unique_ptr<Readout<double>> make_gaussian_readout<double>(const ReadoutConfig&, ReadoutPlace);

}  // namespace v1sysid
