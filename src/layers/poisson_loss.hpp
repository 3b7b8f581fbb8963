// Output nonlinearity of the readout and the Poisson loss (reference-models §2, §5.1):
//   yhat = f(h),  f = softplus (Ecker/Klindt factorised readout) or ELU(h) + 1 (Lurz's Gaussian readout)
//   loss = (1/B) sum_b sum_n (yhat[b,n] - y[b,n] * log(yhat[b,n] + eps)),  eps = 1e-5
// (Ecker's `poisson`: mean over the batch of the sum over neurons), accumulated in double.
// Backward: d_h[b,n] = d_loss / B * (1 - y[b,n] / (yhat[b,n] + eps)) * f'(h[b,n]), assigned.
#pragma once

#include "layers/common.hpp"

namespace v1sysid::layers {

enum class OutputNonlinearity { softplus, elu_plus_one };

const char* to_string(OutputNonlinearity f);
// Parses "softplus" | "elu_plus_one" (the checkpoint's `output_nonlinearity`); throws ConfigError otherwise.
OutputNonlinearity output_nonlinearity_from_string(const std::string& name);

struct PoissonLossOptions {
  double eps = 1e-5;  // inside the log, as in Ecker's code (neuralpredictors uses 1e-12)
};

// yhat = f(h): the model's prediction. yhat may alias h.
template <class T, class ExecSpace>
void output_nonlinearity_forward(ExecSpace const& space, OutputNonlinearity f,
                                 UView2<const T, ExecSpace> h,  // (B, N)
                                 UView2<T, ExecSpace> yhat);    // (B, N), assigned

// d_h = d_yhat * f'(h): the backward of output_nonlinearity_forward for an arbitrary output gradient (the
// model's input gradient; training uses poisson_loss_backward, which includes this step). d_h may alias h.
template <class T, class ExecSpace>
void output_nonlinearity_backward(ExecSpace const& space, OutputNonlinearity f,
                                  UView2<const T, ExecSpace> h,       // (B, N)
                                  UView2<const T, ExecSpace> d_yhat,  // (B, N)
                                  UView2<T, ExecSpace> d_h);          // (B, N), assigned

// Writes yhat = f(h) and returns the loss (double).
template <class T, class ExecSpace>
double poisson_loss_forward(ExecSpace const& space, OutputNonlinearity f, PoissonLossOptions const& o,
                            UView2<const T, ExecSpace> h,  // (B, N), readout pre-activation
                            UView2<const T, ExecSpace> y,  // (B, N), observed responses
                            UView2<T, ExecSpace> yhat);    // (B, N), assigned

// d_h = d_loss * d loss / d h; d_h may alias h.
template <class T, class ExecSpace>
void poisson_loss_backward(ExecSpace const& space, OutputNonlinearity f, PoissonLossOptions const& o,
                           UView2<const T, ExecSpace> h,  // (B, N)
                           UView2<const T, ExecSpace> y,  // (B, N)
                           UView2<T, ExecSpace> d_h,      // (B, N), assigned
                           double d_loss = 1.0);

}  // namespace v1sysid::layers
