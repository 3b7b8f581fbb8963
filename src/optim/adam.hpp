// Adam in TensorFlow 1's formulation (tf.train.AdamOptimizer, the optimiser of Ecker et al. 2019), applied
// as one flat kernel over a ParamArena:
//   t   <- t + 1                                  (the arena's step counter)
//   lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
//   m   <- m + (1 - beta1) (g - m)                (= beta1 m + (1 - beta1) g)
//   v   <- v + (1 - beta2) (g^2 - v)              (= beta2 v + (1 - beta2) g^2)
//   p   <- p - lr_t m / (sqrt(v) + epsilon)
// Note TF puts epsilon outside the bias correction (epsilon "hat" of the Adam paper), so the update differs
// from PyTorch's Adam for tiny v; the defaults are TF's (beta1 0.9, beta2 0.999, epsilon 1e-8).
// Non-trainable slots (ParamArena::add_buffer) and slots in the optional frozen mask keep their parameters
// and moments unchanged; all other slots are updated by one kernel per contiguous run of updatable slots
// (a single launch when nothing is frozen). Nothing is allocated.
#pragma once

#include "core/types.hpp"
#include "core/param_arena.hpp"

#include <cstdint>
#include <vector>

namespace v1sysid {

struct AdamConfig {
  double learning_rate = 0.002;  // Ecker et al. 2019; early stopping divides it by 10 per decay round
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
};

// The bias-corrected step size lr_t of step t (t >= 1). Computed in double on the host.
double adam_step_size(AdamConfig const& config, std::int64_t step);

// Advances arena.adam_step() by one and updates params, adam_m and adam_v from grads.
// frozen: empty (nothing frozen) or one flag per slot (true = leave the slot untouched), e.g.
// slot_mask_with_prefix(arena.slots(), "core/"). ShapeError when its size is neither 0 nor num_slots();
// ConfigError for a non-positive learning rate / epsilon or betas outside [0, 1).
template <class ExecSpace, class T>
void adam_step(ExecSpace const& space, ParamArena<T, typename ExecSpace::memory_space>& arena,
               AdamConfig const& config, std::vector<bool> const& frozen = {});

}  // namespace v1sysid
