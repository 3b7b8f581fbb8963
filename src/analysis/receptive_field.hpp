// Linear receptive fields of a trained model (Ecker et al. 2019, Fig. 6): for neuron n,
//   rf_n[y, x] = d prediction_n / d image[y, x]   at the gray image (every pixel = image_mean, i.e. 0 after
// preprocessing), with evaluation-mode batch norm. Units: the prediction in the units of the stored responses
// (model output * response_std[n]) per grey level of the stored image (the chain rule through
// x = (image - image_mean) / image_std divides by image_std).
//
// One backward pass serves B neurons: a batch of B identical gray images, the output gradient one-hot per row
// (row b selects neuron neurons[i0 + b]), so image b's input gradient is that neuron's receptive field.
#pragma once

#include "data/dataset.hpp"
#include "model/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

template <class T>
struct ReceptiveFields {
  std::vector<int64_t> neurons;       // [n] the neurons, in the order asked for
  std::vector<T> fields;              // [n, H, W] row-major, stored response units per grey level
  std::vector<T> prediction_at_gray;  // [n] stored response units
  int64_t height = 0, width = 0;
};

// The readout an analysis command works on: `data_key` (the option --data-key) names one readout of a model
// with several; empty selects the only readout of a one-readout model. Anything else is a ConfigError naming
// --data-key and listing the model's keys.
template <class T>
int analysis_readout(const Model<T>& model, const std::string& data_key);

// Neuron indices of an analysis command (--neurons): each in [0, n_neurons) and listed once, else ConfigError.
void check_neuron_list(const std::vector<int64_t>& neurons, int64_t n_neurons);

// Receptive fields of `neurons` (all neurons when empty) of readout `readout` (p: that readout's
// preprocessing), `batch` neurons per backward pass. Neuron indices outside [0, N) or repeated are a
// ConfigError naming the option.
template <class T>
ReceptiveFields<T> compute_receptive_fields(Model<T>& model, const Preprocessing& p, std::vector<int64_t> neurons,
                                            int batch = 64, int readout = 0);

}  // namespace v1sysid
