#include "analysis/receptive_field.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <set>
#include <string>

namespace v1sysid {

void check_neuron_list(const std::vector<int64_t>& neurons, int64_t n_neurons) {
  std::set<int64_t> seen;
  for (int64_t n : neurons) {
    if (n < 0 || n >= n_neurons)
      throw ConfigError("neuron " + std::to_string(n) + " is outside 0.." + std::to_string(n_neurons - 1),
                        "--neurons", "give neuron indices (rows of the checkpoint's readout)");
    if (!seen.insert(n).second)
      throw ConfigError("neuron " + std::to_string(n) + " is listed twice", "--neurons", "list each neuron once");
  }
}

template <class T>
int analysis_readout(const Model<T>& model, const std::string& data_key) {
  std::string keys;
  for (int r = 0; r < model.num_readouts(); ++r) {
    const std::string& k = model.readout_spec(r).key;
    if (!k.empty() && k == data_key) return r;
    keys += (keys.empty() ? "" : ", ") + (k.empty() ? std::string("(none)") : k);
  }
  if (data_key.empty() && model.num_readouts() == 1) return 0;
  if (data_key.empty())
    throw ConfigError("the checkpoint's model has " + std::to_string(model.num_readouts()) +
                          " readouts (data keys " + keys + ")",
                      "--data-key", "name the dataset whose readout to analyse");
  throw ConfigError("the checkpoint's model has no readout for data key '" + data_key + "' (data keys " + keys + ")",
                    "--data-key",
                    model.num_readouts() == 1 ? "leave out --data-key for a one-readout model" : "use one of them");
}

template <class T>
ReceptiveFields<T> compute_receptive_fields(Model<T>& model, const Preprocessing& p, std::vector<int64_t> neurons,
                                            int batch, int readout) {
  if (readout < 0 || readout >= model.num_readouts())
    throw ConfigError("readout " + std::to_string(readout) + " does not exist (the model has " +
                          std::to_string(model.num_readouts()) + ")",
                      "--data-key", "name one of the checkpoint's data keys");
  const int64_t N = model.readout_spec(readout).n_neurons, H = model.height(), W = model.width();
  if (neurons.empty())
    for (int64_t n = 0; n < N; ++n) neurons.push_back(n);
  check_neuron_list(neurons, N);
  if (batch < 1) throw ConfigError("the batch must be positive", "--batch", "use e.g. 64");
  if (static_cast<int64_t>(p.response_std.size()) != N)
    throw ShapeError("response_std has " + std::to_string(p.response_std.size()) + " entries for " +
                         std::to_string(N) + " neurons",
                     "the checkpoint's preprocessing", "re-export the checkpoint");
  const int64_t count = static_cast<int64_t>(neurons.size());
  const int B = static_cast<int>(std::min<int64_t>(batch, count));
  auto ws = model.make_workspace(B);
  View1<T> d_prediction("v1sysid::rf::d_prediction", static_cast<size_t>(B * N));
  View1<T> d_images("v1sysid::rf::d_images", static_cast<size_t>(B * H * W));
  auto d_prediction_host = Kokkos::create_mirror_view(d_prediction);
  auto d_images_host = Kokkos::create_mirror_view(d_images);
  auto yhat_host = Kokkos::create_mirror_view(ws.prediction);

  ReceptiveFields<T> out;
  out.neurons = neurons;
  out.height = H;
  out.width = W;
  out.fields.resize(static_cast<size_t>(count * H * W));
  out.prediction_at_gray.resize(static_cast<size_t>(count));
  const double per_grey_level = 1.0 / p.image_std;
  for (int64_t i0 = 0; i0 < count; i0 += B) {
    const int b = static_cast<int>(std::min<int64_t>(B, count - i0));
    // The gray image is 0 after preprocessing; forward is rerun per pass because backward consumes its caches.
    Kokkos::deep_copy(ws.images, T(0));
    model.forward(ws, b, false, readout);
    Kokkos::deep_copy(yhat_host, ws.prediction);
    Kokkos::deep_copy(d_prediction_host, T(0));
    for (int r = 0; r < b; ++r) d_prediction_host(static_cast<size_t>(r * N + neurons[static_cast<size_t>(i0 + r)])) = T(1);
    Kokkos::deep_copy(d_prediction, d_prediction_host);
    model.input_gradient(ws, b, d_prediction, d_images, readout);
    Kokkos::deep_copy(d_images_host, d_images);
    for (int r = 0; r < b; ++r) {
      const int64_t n = neurons[static_cast<size_t>(i0 + r)];
      const double scale = static_cast<double>(p.response_std[static_cast<size_t>(n)]);
      out.prediction_at_gray[static_cast<size_t>(i0 + r)] = static_cast<T>(yhat_host(static_cast<size_t>(n)) * scale);
      for (int64_t k = 0; k < H * W; ++k)
        out.fields[static_cast<size_t>((i0 + r) * H * W + k)] =
            static_cast<T>(d_images_host(static_cast<size_t>(r * H * W + k)) * scale * per_grey_level);
    }
  }
  return out;
}

template int analysis_readout(const Model<float>&, const std::string&);
template int analysis_readout(const Model<double>&, const std::string&);
template ReceptiveFields<float> compute_receptive_fields(Model<float>&, const Preprocessing&, std::vector<int64_t>, int,
                                                         int);
template ReceptiveFields<double> compute_receptive_fields(Model<double>&, const Preprocessing&, std::vector<int64_t>,
                                                          int, int);

}  // namespace v1sysid
