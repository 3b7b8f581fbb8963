// The readouts of a model (one per dataset, "data_key"), each a map from the core's output to the pre-activation
// of its neurons:
//   core_out [B, C, H, W] -> h [B, N]        prediction = output_nonlinearity(h)
// A readout kind owns its parameter slots (arena names readout/[<key>/]<name>), their initialisation, its
// workspace buffers, forward, backward, regulariser, output nonlinearity and its export/ group; the model holds a
// Readout per dataset and never asks which kind it is. The kinds are registered in readout.cpp (make_readout):
//   factorized  readout_factorized.cpp  Ecker et al. 2019 / Klindt et al. 2017 (layers/factorized_readout.hpp)
//   gaussian    readout_gaussian.cpp    Lurz et al. 2021 FullGaussian2d (layers/gaussian_readout.hpp)
// A new kind is one file with its class and factory, one ReadoutKind value (model_config.hpp) with its spelling,
// and one line in make_readout.
#pragma once

#include "core/param_arena.hpp"
#include "core/random.hpp"
#include "core/types.hpp"
#include "layers/common.hpp"
#include "layers/poisson_loss.hpp"
#include "model/model_config.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace v1sysid {

// Unmanaged views of the default execution space, the calling convention of layers/ (the model and its parts).
namespace model_views {
template <class T>
using U1 = layers::UView1<T, ExecSpace>;
template <class T>
using U2 = layers::UView2<T, ExecSpace>;
template <class T>
using U3 = layers::UView3<T, ExecSpace>;
template <class T>
using U4 = layers::UView4<T, ExecSpace>;
}  // namespace model_views

// What initialisation needs per readout: mean preprocessed training response [N] and, for the cortex grid
// predictor, neurons/cell_motor_coordinates [N, 3] (row-major; only the first two columns are used).
struct ReadoutInit {
  std::vector<double> mean_response;
  std::vector<float> cortical_coordinates;
};

// Where a readout sits: its data_key ("" for the one readout of a one-dataset model), its neurons and the core
// output it reads.
struct ReadoutPlace {
  std::string key;
  int n_neurons = 0;
  int channels = 0, height = 0, width = 0;
  // "readout/" or "readout/<key>/": the prefix of its slot names.
  std::string slot_prefix() const { return key.empty() ? "readout/" : "readout/" + key + "/"; }
};

// One tensor of a readout's export/ group (framework-neutral, PyTorch conventions; docs/formats.md), and the group.
struct ExportTensor {
  std::string name;
  std::vector<float> values;
  std::vector<std::uint64_t> shape;
};
struct ExportGroup {
  std::vector<ExportTensor> tensors;                                // in the order they are written
  std::vector<std::pair<std::string, std::string>> text_attributes;
  std::vector<std::pair<std::string, std::int64_t>> int_attributes;
  std::vector<std::pair<std::string, double>> real_attributes;
};

// Workspace buffers of one readout kind: sizes (elements) for `capacity` images, in the kind's own order. The
// model allocates, per position, the largest size over its readouts once (ModelWorkspace::readout_buffers).
using ReadoutBufferSizes = std::vector<std::size_t>;

template <class T>
class Readout {
 public:
  using Buffers = std::vector<View1<T>>;
  explicit Readout(ReadoutPlace place) : m_place(std::move(place)) {}
  virtual ~Readout() = default;
  const ReadoutPlace& place() const { return m_place; }
  int n_neurons() const { return m_place.n_neurons; }

  // Registers the slots in the arena (before it is allocated), in a fixed order.
  virtual void add_slots(ParamArena<T>& arena) = 0;
  // Draws the initial parameters from `rng` (a fixed order of draws) and the mean responses.
  virtual void initialize(ParamArena<T>& arena, SplitMix64& rng, const ReadoutInit& init) const = 0;
  // Every slot this readout added (for zeroing its Adam state when it is initialised alone).
  virtual std::vector<int> slots() const = 0;
  virtual ReadoutBufferSizes buffer_sizes(int capacity) const = 0;
  virtual layers::OutputNonlinearity output_nonlinearity() const = 0;
  // Whether a training forward draws noise (the model then passes a fresh noise_seed each time).
  virtual bool draws_noise() const { return false; }

  // h <- readout(core_out) for the first `batch` images. training: the kind's training-mode behaviour (e.g. the
  // Gaussian readout's projection of mu and its sampled positions from noise_seed).
  virtual void forward(ExecSpace const& space, const ParamArena<T>& arena, const Buffers& buffers, int batch,
                       bool training, std::uint64_t noise_seed,
                       model_views::U4<const T> core_out,  // (batch, C, H, W)
                       model_views::U2<T> h) const = 0;    // (batch, N)
  // Parameter gradients accumulated into the arena; d_core (batch, C, H, W) assigned where it has data.
  // training: as the forward it follows.
  virtual void backward(ExecSpace const& space, const ParamArena<T>& arena, const Buffers& buffers, int batch,
                        bool training, model_views::U4<const T> core_out, model_views::U2<const T> d_h,
                        model_views::U4<T> d_core) const = 0;
  // The regulariser at the current parameters; with_grad: its gradient accumulated into the arena too.
  virtual double regularization(ExecSpace const& space, const ParamArena<T>& arena, bool with_grad) const = 0;
  // Host copy of the receptive-field positions [N, 2] in [-1, 1] (empty for a kind without positions).
  virtual std::vector<float> positions(const ParamArena<T>& arena) const { (void)arena; return {}; }
  // The export/ group of this readout at the current parameters.
  virtual ExportGroup export_group(const ParamArena<T>& arena) const = 0;

 private:
  ReadoutPlace m_place;
};

// The inverse of softplus, log(e^y - 1), for y > 0 (computed as y + log(-expm1(-y)) without overflow).
double inverse_softplus(double y);

// The readout of `config.kind` at `place` (the registry).
template <class T>
std::unique_ptr<Readout<T>> make_readout(const ReadoutConfig& config, ReadoutPlace place);

// ---- helpers of the readouts and the core: host-side initialisation of a slot ------------------------------
constexpr double kInitSd = 0.01;  // the truncated-normal sd of conv weights, mask and features (reference)

// Fills a slot on the host with draw(i) for every element i, in slot element order.
template <class T, class Draw>
void fill_with(ParamArena<T>& arena, int slot, Draw draw) {
  auto flat = arena.param_flat(slot);
  auto host = Kokkos::create_mirror_view(flat);
  for (size_t i = 0; i < host.extent(0); ++i) host(i) = static_cast<T>(draw(i));
  Kokkos::deep_copy(flat, host);
}

// Truncated-normal values (cut at 2 sd), drawn on the host in slot element order.
template <class T>
void fill_truncated_normal(ParamArena<T>& arena, int slot, SplitMix64& rng, double sd = kInitSd) {
  fill_with(arena, slot, [&](size_t) { return rng.truncated_normal(sd); });
}

// Host copy of a slot's values as float (export/).
template <class T>
std::vector<float> slot_values_host(const ParamArena<T>& arena, int slot) {
  const auto& s = arena.slot(slot);
  auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), arena.param_flat(slot));
  std::vector<float> out(s.size);
  for (size_t i = 0; i < s.size; ++i) out[i] = static_cast<float>(host(i));
  return out;
}

// A slot's extents as an export shape (its rank's leading extents).
template <class T>
std::vector<std::uint64_t> slot_shape_of(const ParamArena<T>& arena, int slot) {
  const auto& s = arena.slot(slot);
  std::vector<std::uint64_t> shape;
  for (int r = 0; r < s.rank; ++r) shape.push_back(s.extents[static_cast<size_t>(r)]);
  return shape;
}

}  // namespace v1sysid
