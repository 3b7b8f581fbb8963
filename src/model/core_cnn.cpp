// The CNN core of Ecker et al. 2019 (reference-models.md §1.3): a dense conv per layer, SAME or VALID padding.
// Slots: core/layer{l}/weight [C_out, C_in, k, k]. Initialisation: truncated normal (sd 0.01, cut at 2 sd).
#include "model/core.hpp"

namespace v1sysid {

namespace {

template <class T>
class CnnCore final : public Core<T> {
 public:
  CnnCore(const CoreConfig& config, int height, int width) : Core<T>(config, height, width) {}

 protected:
  void add_conv_slots(ParamArena<T>& arena, int l) override {
    const auto& g = this->geometry(l);
    m_weight.push_back(arena.add(this->slot_prefix(l) + "weight", g.c_out, g.c_in, g.k, g.k));
  }
  void initialize_conv(ParamArena<T>& arena, SplitMix64& rng, int l) const override {
    fill_truncated_normal(arena, m_weight[static_cast<size_t>(l)], rng);
  }
  View4<T> filter_view(const ParamArena<T>& arena, int l) const override {
    return arena.template param<4>(m_weight[static_cast<size_t>(l)]);
  }
  View4<T> d_filter_view(const ParamArena<T>& arena, int l) const override {
    return arena.template grad<4>(m_weight[static_cast<size_t>(l)]);
  }

 private:
  std::vector<int> m_weight;  // per layer
};

}  // namespace

template <class T>
std::unique_ptr<Core<T>> make_cnn_core(const CoreConfig& config, int height, int width) {
  return std::make_unique<CnnCore<T>>(config, height, width);
}

template std::unique_ptr<Core<float>> make_cnn_core<float>(const CoreConfig&, int, int);
template std::unique_ptr<Core<double>> make_cnn_core<double>(const CoreConfig&, int, int);

}  // namespace v1sysid
