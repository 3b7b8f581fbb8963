// The rotation-equivariant core of Ecker et al. 2019 (reference-models.md §2, layers/hermite.hpp): layer l holds
// Hermite coefficients core/layer{l}/coeffs [Q, C_in, F] (Q = k(k+1)/2) instead of a weight; its filters
// [R*F, C_in, k, k] are synthesised from them once per forward (i.e. once per training step, not per image) into
// core-owned buffers and run through the dense conv; the regularisers act on these synthesised filters of all
// rotations, and the filter gradient (conv + regularisers) flows back into the coefficients. Batch norm has F
// groups (statistics, beta, gamma per feature, shared by its R rotations) when core.batchnorm_shared_rotations,
// else R*F (per channel). Initialisation: coefficients truncated normal with sd core.coeff_init_sd (0.1 in the
// reference).
#include "model/core.hpp"

#include "core/error.hpp"
#include "core/profiling.hpp"
#include "layers/hermite.hpp"

#include <algorithm>

namespace v1sysid {

namespace {

using namespace model_views;

template <class T>
class RoteqCore final : public Core<T> {
 public:
  RoteqCore(const CoreConfig& config, int height, int width) : Core<T>(config, height, width) {}

  void allocate_buffers() override {
    size_t scratch = 1;
    for (int l = 0; l < this->num_layers(); ++l) {
      const auto& hs = m_shape[static_cast<size_t>(l)];
      m_pooled_basis.push_back(layers::make_hermite_pooled_basis<T>(hs.K, hs.R));
      const std::string p = "layer" + std::to_string(l) + "::";
      m_filters.push_back(model_buffer<T>(p + "filters", hs.filter_size()));
      m_d_filters.push_back(model_buffer<T>(p + "d_filters", hs.filter_size()));
      scratch = std::max(scratch, layers::hermite_workspace_size(hs));
    }
    m_synth_scratch = model_buffer<T>("hermite_scratch", scratch);
  }

 protected:
  void add_conv_slots(ParamArena<T>& arena, int l) override {
    const auto& g = this->geometry(l);
    const auto& c = this->config();
    layers::HermiteShape hs;
    hs.K = g.k;
    hs.R = c.rotations;
    hs.C_in = g.c_in;
    hs.F = c.features[static_cast<size_t>(l)];
    hs.roll = l == 0 ? 0 : c.features[static_cast<size_t>(l - 1)];
    layers::validate(hs);
    m_shape.push_back(hs);
    m_coeffs.push_back(arena.add(this->slot_prefix(l) + "coeffs", hs.Q(), hs.C_in, hs.F));
  }
  int batchnorm_groups(int l) const override {
    return this->config().batchnorm_shared_rotations ? m_shape[static_cast<size_t>(l)].F : this->geometry(l).c_out;
  }
  int batchnorm_rotations() const override { return this->config().rotations; }
  bool batchnorm_shared_rotations() const override { return this->config().batchnorm_shared_rotations; }
  void initialize_conv(ParamArena<T>& arena, SplitMix64& rng, int l) const override {
    fill_truncated_normal(arena, m_coeffs[static_cast<size_t>(l)], rng, this->config().coeff_init_sd);
  }
  void prepare_filters(ExecSpace const& space, const ParamArena<T>& arena) const override {
    for (int l = 0; l < this->num_layers(); ++l) {
      const auto i = static_cast<size_t>(l);
      layers::hermite_synthesize_forward<T>(space, m_shape[i], U2<const T>(m_pooled_basis[i]),
                                            U3<const T>(arena.template param<3>(m_coeffs[i])),
                                            U4<T>(filter_view(arena, l)), U1<T>(m_synth_scratch));
    }
  }
  View4<T> filter_view(const ParamArena<T>&, int l) const override { return as_filters(m_filters, l); }
  View4<T> d_filter_view(const ParamArena<T>&, int l) const override { return as_filters(m_d_filters, l); }
  void begin_filter_gradient(ExecSpace const& space) const override {
    for (const auto& d : m_d_filters) Kokkos::deep_copy(space, d, T(0));
  }
  void finish_filter_gradient(ExecSpace const& space, const ParamArena<T>& arena, int l,
                              View4<T> d_filters) const override {
    ScopedRegion synthesis_region("backward/hermite_synthesis");
    const auto i = static_cast<size_t>(l);
    layers::hermite_synthesize_backward<T>(space, m_shape[i], U2<const T>(m_pooled_basis[i]), U4<const T>(d_filters),
                                           U3<T>(arena.template grad<3>(m_coeffs[i])), U1<T>(m_synth_scratch));
  }

 private:
  View4<T> as_filters(const std::vector<View1<T>>& buffers, int l) const {
    const auto& g = this->geometry(l);
    return View4<T>(buffers[static_cast<size_t>(l)].data(), g.c_out, g.c_in, g.k, g.k);
  }

  // Per layer: synthesis shape, coefficient slot, pooled rotated basis (R*k*k, Q), synthesised filters and their
  // gradient (C_out*C_in*k*k each); and the synthesis GEMM scratch (max hermite_workspace_size).
  std::vector<layers::HermiteShape> m_shape;
  std::vector<int> m_coeffs;
  std::vector<View2<T>> m_pooled_basis;
  std::vector<View1<T>> m_filters;
  std::vector<View1<T>> m_d_filters;
  View1<T> m_synth_scratch;
};

}  // namespace

template <class T>
std::unique_ptr<Core<T>> make_roteq_core(const CoreConfig& config, int height, int width) {
  return std::make_unique<RoteqCore<T>>(config, height, width);
}

template std::unique_ptr<Core<float>> make_roteq_core<float>(const CoreConfig&, int, int);
template std::unique_ptr<Core<double>> make_roteq_core<double>(const CoreConfig&, int, int);

}  // namespace v1sysid
