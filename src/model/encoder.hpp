// The last stage of a model (neuralpredictors' FiringRateEncoder): the readout's pre-activation h [B, N] becomes
// the predicted firing rate yhat = f(h) by the readout kind's output nonlinearity f, scored by the Poisson loss
//   loss = (1/B) sum_b sum_n (yhat - y log(yhat + eps))   (layers/poisson_loss.hpp)
// eps is 1e-5 (Ecker) or 1e-12 under the lurz schedule (neuralpredictors' PoissonLoss).
#pragma once

#include "layers/poisson_loss.hpp"
#include "model/model_config.hpp"
#include "model/readout.hpp"

namespace v1sysid {

struct Encoder {
  layers::OutputNonlinearity nonlinearity = layers::OutputNonlinearity::softplus;
  layers::PoissonLossOptions loss;

  Encoder() = default;
  Encoder(layers::OutputNonlinearity f, const TrainConfig& train) : nonlinearity(f) {
    if (train.lurz()) loss.eps = 1e-12;
  }

  // yhat = f(h)
  template <class T>
  void forward(ExecSpace const& space, model_views::U2<const T> h, model_views::U2<T> yhat) const {
    layers::output_nonlinearity_forward<T>(space, nonlinearity, h, yhat);
  }
  // The Poisson loss of yhat (recomputed from h) against y.
  template <class T>
  double loss_value(ExecSpace const& space, model_views::U2<const T> h, model_views::U2<const T> y,
                    model_views::U2<T> yhat) const {
    return layers::poisson_loss_forward<T>(space, nonlinearity, loss, h, y, yhat);
  }
  // d_h of loss_weight * loss (d_h may alias h).
  template <class T>
  void loss_backward(ExecSpace const& space, model_views::U2<const T> h, model_views::U2<const T> y,
                     model_views::U2<T> d_h, double loss_weight) const {
    layers::poisson_loss_backward<T>(space, nonlinearity, loss, h, y, d_h, loss_weight);
  }
  // d_h from d yhat through f (d_h may alias h).
  template <class T>
  void backward(ExecSpace const& space, model_views::U2<const T> h, model_views::U2<const T> d_yhat,
                model_views::U2<T> d_h) const {
    layers::output_nonlinearity_backward<T>(space, nonlinearity, h, d_yhat, d_h);
  }
};

}  // namespace v1sysid
