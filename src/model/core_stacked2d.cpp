// The stacked2d core of Lurz et al. 2021 (reference-models.md §5.1): layer 0 is a dense conv
// core/layer0/weight [C, 1, k, k] (SAME or VALID); each hidden layer l >= 1 is depth-separable and SAME,
//   core/layer{l}/pointwise_in [C, C_in, 1, 1] -> core/layer{l}/depthwise [C, 1, k, k] -> core/layer{l}/weight [C, C, 1, 1]
// then BN + ELU. Conv weights xavier-normal (sd sqrt(2 / (fan_in + fan_out)), PyTorch's fans). laplace_weight x
// LaplaceL2 on layer 0's weight (core.cpp's regulariser; the filters of a separable layer are its last 1x1).
#include "model/core.hpp"

#include <initializer_list>

namespace v1sysid {

namespace {

using namespace model_views;

// Shapes of the three convolutions of a depth-separable layer.
layers::Conv2dShape pointwise_shape(int batch, int c_in, int c_out, int h, int w) {
  layers::Conv2dShape s;
  s.B = batch;
  s.C_in = c_in;
  s.C_out = c_out;
  s.H = h;
  s.W = w;
  s.K = 1;
  s.padding = layers::Padding::same;
  return s;
}
layers::DepthwiseConv2dShape depthwise_shape(int batch, int c, int h, int w, int k) {
  layers::DepthwiseConv2dShape s;
  s.B = batch;
  s.C = c;
  s.H = h;
  s.W = w;
  s.K = k;
  s.padding = layers::Padding::same;
  return s;
}

template <class T>
class Stacked2dCore final : public Core<T> {
 public:
  using Workspace = typename Core<T>::Workspace;
  Stacked2dCore(const CoreConfig& config, int height, int width) : Core<T>(config, height, width) {
    for (int l = 1; l < this->num_layers(); ++l) this->set_separable(l);
  }

 protected:
  void add_conv_slots(ParamArena<T>& arena, int l) override {
    const auto& g = this->geometry(l);
    const std::string p = this->slot_prefix(l);
    Slots s;
    if (g.separable) {
      s.pointwise_in = arena.add(p + "pointwise_in", g.c_out, g.c_in, 1, 1);
      s.depthwise = arena.add(p + "depthwise", g.c_out, 1, g.k, g.k);
      s.weight = arena.add(p + "weight", g.c_out, g.c_out, 1, 1);
    } else {
      s.weight = arena.add(p + "weight", g.c_out, g.c_in, g.k, g.k);
    }
    m_conv.push_back(s);
  }
  void initialize_conv(ParamArena<T>& arena, SplitMix64& rng, int l) const override {
    const auto& s = m_conv[static_cast<size_t>(l)];
    for (int slot : std::initializer_list<int>{s.pointwise_in, s.depthwise, s.weight})  // nvcc 13 rejects a bare braced list here
      if (slot >= 0) fill_xavier_normal(arena, slot, rng);
  }
  View4<T> filter_view(const ParamArena<T>& arena, int l) const override {
    return arena.template param<4>(m_conv[static_cast<size_t>(l)].weight);
  }
  View4<T> d_filter_view(const ParamArena<T>& arena, int l) const override {
    return arena.template grad<4>(m_conv[static_cast<size_t>(l)].weight);
  }
  // Per separable layer l: the outputs of its first 1x1 and of its depthwise conv (buffers 2l, 2l+1); then the
  // gradients of the two (2L, 2L+1).
  std::vector<size_t> kind_buffer_sizes(int capacity) const override {
    const int L = this->num_layers();
    std::vector<size_t> sizes(static_cast<size_t>(2 * L + 2), 0);
    size_t max_act = 0;
    for (int l = 0; l < L; ++l) {
      const auto& g = this->geometry(l);
      const size_t act = static_cast<size_t>(capacity) * static_cast<size_t>(g.c_out) * static_cast<size_t>(g.h_out * g.w_out);
      max_act = std::max(max_act, act);
      if (g.separable) sizes[static_cast<size_t>(2 * l)] = sizes[static_cast<size_t>(2 * l + 1)] = act;
    }
    if (L > 1) sizes[static_cast<size_t>(2 * L)] = sizes[static_cast<size_t>(2 * L + 1)] = max_act;
    return sizes;
  }
  size_t conv_workspace_size(int l, int capacity, layers::ConvAlgorithm algorithm) const override {
    return this->geometry(l).separable ? 0 : Core<T>::conv_workspace_size(l, capacity, algorithm);
  }
  void conv_forward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int l, int batch,
                    layers::ConvAlgorithm algorithm, U4<const T> in, U4<T> out) const override {
    const auto& g = this->geometry(l);
    if (!g.separable) return Core<T>::conv_forward(space, arena, ws, l, batch, algorithm, in, out);
    const auto& s = m_conv[static_cast<size_t>(l)];
    U4<T> a(ws.kind_buffers[static_cast<size_t>(2 * l)].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<T> b(ws.kind_buffers[static_cast<size_t>(2 * l + 1)].data(), batch, g.c_out, g.h_out, g.w_out);
    layers::conv2d_forward<T>(space, pointwise_shape(batch, g.c_in, g.c_out, g.h_in, g.w_in),
                              arena.template param<4>(s.pointwise_in), in, a, ws.conv_scratch);
    layers::depthwise_conv2d_forward<T>(space, depthwise_shape(batch, g.c_out, g.h_out, g.w_out, g.k),
                                        arena.template param<4>(s.depthwise), U4<const T>(a), b);
    layers::conv2d_forward<T>(space, pointwise_shape(batch, g.c_out, g.c_out, g.h_out, g.w_out),
                              arena.template param<4>(s.weight), U4<const T>(b), out, ws.conv_scratch);
  }
  void conv_backward(ExecSpace const& space, const ParamArena<T>& arena, Workspace& ws, int l, int batch,
                     layers::ConvAlgorithm algorithm, U4<const T> in, U4<const T> d_out, U4<T> d_in) const override {
    const auto& g = this->geometry(l);
    if (!g.separable) return Core<T>::conv_backward(space, arena, ws, l, batch, algorithm, in, d_out, d_in);
    const auto& s = m_conv[static_cast<size_t>(l)];
    const auto L = static_cast<size_t>(this->num_layers());
    U4<T> d_b(ws.kind_buffers[2 * L].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<T> d_a(ws.kind_buffers[2 * L + 1].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<const T> a(ws.kind_buffers[static_cast<size_t>(2 * l)].data(), batch, g.c_out, g.h_out, g.w_out);
    U4<const T> b(ws.kind_buffers[static_cast<size_t>(2 * l + 1)].data(), batch, g.c_out, g.h_out, g.w_out);
    layers::conv2d_backward<T>(space, pointwise_shape(batch, g.c_out, g.c_out, g.h_out, g.w_out),
                               arena.template param<4>(s.weight), b, d_out, d_b, arena.template grad<4>(s.weight),
                               ws.conv_scratch);
    layers::depthwise_conv2d_backward<T>(space, depthwise_shape(batch, g.c_out, g.h_out, g.w_out, g.k),
                                         arena.template param<4>(s.depthwise), a, U4<const T>(d_b), d_a,
                                         arena.template grad<4>(s.depthwise));
    layers::conv2d_backward<T>(space, pointwise_shape(batch, g.c_in, g.c_out, g.h_in, g.w_in),
                               arena.template param<4>(s.pointwise_in), in, U4<const T>(d_a), d_in,
                               arena.template grad<4>(s.pointwise_in), ws.conv_scratch);
  }
  // A separable layer is three export/ entries: 1x1, depthwise (groups = C), then the last 1x1 with the batch norm.
  void export_before(const ParamArena<T>& arena, int l, std::vector<ExportGroup>& out) const override {
    const auto& g = this->geometry(l);
    if (!g.separable) return;
    const auto& s = m_conv[static_cast<size_t>(l)];
    out.push_back(conv_export(arena, s.pointwise_in, "same", 1));
    out.push_back(conv_export(arena, s.depthwise, "same", g.c_out));
    for (auto it = out.end() - 2; it != out.end(); ++it) it->text_attributes.push_back({"nonlinearity", "none"});
  }

 private:
  struct Slots {
    int pointwise_in = -1, depthwise = -1, weight = -1;  // a dense layer has only weight
  };
  std::vector<Slots> m_conv;  // per layer
};

}  // namespace

template <class T>
std::unique_ptr<Core<T>> make_stacked2d_core(const CoreConfig& config, int height, int width) {
  return std::make_unique<Stacked2dCore<T>>(config, height, width);
}

template std::unique_ptr<Core<float>> make_stacked2d_core<float>(const CoreConfig&, int, int);
template std::unique_ptr<Core<double>> make_stacked2d_core<double>(const CoreConfig&, int, int);

}  // namespace v1sysid
