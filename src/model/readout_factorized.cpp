// The factorised readout of Ecker et al. 2019 / Klindt et al. 2017 (reference-models.md §1.3, §2):
//   h[b,n] = sum_c F[n,c] sum_{y,x} |M~[n,y,x]| X[b,c,y,x] + bias[n]    (F = |F~| if positive_features)
//   prediction = softplus(h)
// Slots: mask [N, H, W] (raw M~), features [N, C] (raw F~), bias [N]. Initialisation: mask and features
// truncated normal (sd 0.01, cut at 2 sd); bias b_n = 0.5 * softplus^-1(max(mean_n, 1e-3)): the clamp keeps the
// bias finite for silent neurons (softplus^-1(1e-3) = -6.9, so a silent neuron starts at softplus(-3.45) = 0.031
// instead of -infinity in the log). Regulariser: readout.regularizer (layers/regularizers.hpp).
#include "model/readout.hpp"

#include "layers/factorized_readout.hpp"
#include "layers/regularizers.hpp"

#include <algorithm>
#include <cmath>

namespace v1sysid {

namespace {

using namespace model_views;

constexpr double kMinMeanResponse = 1e-3;

template <class T>
class FactorizedReadout final : public Readout<T> {
 public:
  using Buffers = typename Readout<T>::Buffers;

  FactorizedReadout(const ReadoutConfig& config, ReadoutPlace place) : Readout<T>(std::move(place)), m_config(config) {}

  void add_slots(ParamArena<T>& arena) override {
    const auto& p = this->place();
    const std::string prefix = p.slot_prefix();
    m_mask = arena.add(prefix + "mask", p.n_neurons, p.height, p.width);
    m_features = arena.add(prefix + "features", p.n_neurons, p.channels);
    m_bias = arena.add(prefix + "bias", p.n_neurons);
  }

  void initialize(ParamArena<T>& arena, SplitMix64& rng, const ReadoutInit& init) const override {
    fill_truncated_normal(arena, m_mask, rng);
    fill_truncated_normal(arena, m_features, rng);
    fill_with(arena, m_bias, [&](size_t n) {
      return 0.5 * inverse_softplus(std::max(init.mean_response[n], kMinMeanResponse));
    });
  }

  std::vector<int> slots() const override { return {m_mask, m_features, m_bias}; }

  ReadoutBufferSizes buffer_sizes(int capacity) const override {  // {cache, scratch}
    const auto s = shape(capacity);
    return {layers::factorized_readout_cache_size(s), layers::factorized_readout_workspace_size(s)};
  }

  layers::OutputNonlinearity output_nonlinearity() const override { return layers::OutputNonlinearity::softplus; }

  void forward(ExecSpace const& space, const ParamArena<T>& arena, const Buffers& buffers, int batch, bool,
               std::uint64_t, U4<const T> core_out, U2<T> h) const override {
    layers::factorized_readout_forward<T>(space, shape(batch), options(), arena.template param<3>(m_mask),
                                          arena.template param<2>(m_features), arena.param_flat(m_bias), core_out, h,
                                          buffers[0], buffers[1]);
  }

  void backward(ExecSpace const& space, const ParamArena<T>& arena, const Buffers& buffers, int batch, bool,
                U4<const T> core_out, U2<const T> d_h, U4<T> d_core) const override {
    layers::factorized_readout_backward<T>(space, shape(batch), options(), arena.template param<3>(m_mask),
                                           arena.template param<2>(m_features), core_out, d_h, buffers[0], d_core,
                                           arena.template grad<3>(m_mask), arena.template grad<2>(m_features),
                                           arena.grad_flat(m_bias), buffers[1]);
  }

  double regularization(ExecSpace const& space, const ParamArena<T>& arena, bool with_grad) const override {
    const auto& ro = m_config;
    const auto mask = arena.template param<3>(m_mask);
    const auto features = arena.template param<2>(m_features);
    if (!with_grad) {
      if (ro.regularizer == "joint_l1") return layers::readout_joint_l1_value(space, mask, features, ro.weight);
      if (ro.regularizer == "separate_l1")
        return layers::readout_separate_l1_value(space, mask, features, ro.mask_weight, ro.feature_weight);
      return layers::readout_l1_mask_l2_features_value(space, mask, features, ro.mask_weight, ro.feature_weight);
    }
    const auto d_mask = arena.template grad<3>(m_mask);
    const auto d_features = arena.template grad<2>(m_features);
    if (ro.regularizer == "joint_l1")
      return layers::readout_joint_l1_grad(space, mask, features, ro.weight, d_mask, d_features);
    if (ro.regularizer == "separate_l1")
      return layers::readout_separate_l1_grad(space, mask, features, ro.mask_weight, ro.feature_weight, d_mask,
                                              d_features);
    return layers::readout_l1_mask_l2_features_grad(space, mask, features, ro.mask_weight, ro.feature_weight, d_mask,
                                                    d_features);
  }

  ExportGroup export_group(const ParamArena<T>& arena) const override {
    auto absolute = [](std::vector<float> v) {
      for (auto& x : v) x = std::fabs(x);
      return v;
    };
    ExportGroup g;
    g.tensors.push_back({"mask", absolute(slot_values_host(arena, m_mask)), slot_shape_of(arena, m_mask)});
    auto features = slot_values_host(arena, m_features);
    if (m_config.positive_features) features = absolute(std::move(features));
    g.tensors.push_back({"features", std::move(features), slot_shape_of(arena, m_features)});
    g.tensors.push_back({"bias", slot_values_host(arena, m_bias), slot_shape_of(arena, m_bias)});
    g.text_attributes.push_back({"kind", "factorized"});
    return g;
  }

 private:
  layers::FactorizedReadoutShape shape(int batch) const {
    const auto& p = this->place();
    layers::FactorizedReadoutShape s;
    s.B = batch;
    s.C = p.channels;
    s.H = p.height;
    s.W = p.width;
    s.N = p.n_neurons;
    return s;
  }
  layers::FactorizedReadoutOptions options() const {
    layers::FactorizedReadoutOptions o;
    o.positive_features = m_config.positive_features;
    return o;
  }

  ReadoutConfig m_config;
  int m_mask = -1, m_features = -1, m_bias = -1;
};

}  // namespace

template <class T>
std::unique_ptr<Readout<T>> make_factorized_readout(const ReadoutConfig& config, ReadoutPlace place) {
  return std::make_unique<FactorizedReadout<T>>(config, std::move(place));
}

template std::unique_ptr<Readout<float>> make_factorized_readout<float>(const ReadoutConfig&, ReadoutPlace);
template std::unique_ptr<Readout<double>> make_factorized_readout<double>(const ReadoutConfig&, ReadoutPlace);

}  // namespace v1sysid
