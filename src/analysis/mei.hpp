// Most exciting inputs (Walker et al. 2019): for neuron n of a trained model, the image that maximises its
// evaluation-mode prediction under a fixed contrast,
//   x*_n = argmax_x prediction_n(x)   subject to  ||x||_2 = rms * sqrt(H * W)   (preprocessed units)
// and every pixel within the stored grey range [0, 255]. x is the preprocessed image (image - image_mean) /
// image_std, so rms 1 is the RMS contrast of the training images (their pixel SD) around their mean grey.
//
// Projected gradient ascent, several random starts per neuron (the best one is kept):
//   g  = d prediction_n / d x                  (Model::input_gradient, one-hot output gradient per image)
//   g' = Gaussian blur of g, sigma from blur_start to blur_end pixels over the steps (the preconditioner that
//        keeps high spatial frequencies out early)
//   x += step_t * ||x||_target * g' / ||g'||   step_t decays linearly from `step` to step / 10
//   x  = x * ||x||_target / ||x||, then clipped to the grey range (a clipped image may fall short of the norm)
// One forward and one input-gradient pass serve `batch` (neuron, start) pairs.
#pragma once

#include "data/dataset.hpp"
#include "model/model.hpp"

#include <cstdint>
#include <vector>

namespace v1sysid {

struct MeiOptions {
  int steps = 200;
  int starts = 3;             // random starts per neuron
  double rms = 1.0;           // RMS contrast of the MEI in preprocessed units (1: the training images' pixel SD)
  double step = 0.1;          // first step as a fraction of the image norm
  double blur_start = 2.0;    // sigma (pixels) of the gradient blur at the first step ...
  double blur_end = 0.5;      // ... and at the last (0: no blur)
  uint64_t seed = 1;          // the random starts: a pure function of (seed, neuron, start)
  int batch = 64;             // (neuron, start) pairs per pass
};

template <class T>
struct MostExcitingInputs {
  std::vector<int64_t> neurons;              // [n] in the order asked for
  std::vector<float> images;                 // [n, H, W] grey levels of the stored image (0..255)
  std::vector<double> activation;            // [n] prediction at the MEI, stored response units
  std::vector<double> activation_by_start;   // [n, starts] the prediction each start ended at
  std::vector<double> activation_at_gray;    // [n] the prediction at the uniform mean-grey image
  int64_t height = 0, width = 0;
};

// MEIs of `neurons` (all when empty) of readout `readout` (p: its preprocessing). Bad options or neuron indices
// are a ConfigError naming the option. Shows progress unless Progress is disabled.
template <class T>
MostExcitingInputs<T> compute_meis(Model<T>& model, const Preprocessing& p, std::vector<int64_t> neurons,
                                   const MeiOptions& options, int readout = 0);

// The MEIs of an ensemble (train/ensemble.hpp): the images that maximise the mean of the members' predictions in
// stored response units. The image and its constraints live in the first member's preprocessed scale; member m
// sees the same grey levels through its own image_mean / image_std.
template <class T>
struct MeiMember {
  Model<T>* model;
  const Preprocessing* preprocessing;
};
template <class T>
MostExcitingInputs<T> compute_meis(const std::vector<MeiMember<T>>& members, std::vector<int64_t> neurons,
                                   const MeiOptions& options, int readout = 0);

// Separable Gaussian blur of one H x W image in place (sigma in pixels, truncated at 3 sigma, edges renormalised);
// sigma <= 0 leaves it unchanged.
void gaussian_blur(std::vector<double>& image, int64_t height, int64_t width, double sigma);

}  // namespace v1sysid
