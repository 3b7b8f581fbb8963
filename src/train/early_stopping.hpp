// The reference's training schedule (reference-models.md §3.1, aecker/cnn-sys-ident Trainer.fit) as a pure
// policy, separate from any model so that it can be tested on a scripted validation curve.
//
// for round in 0 .. lr_decay_steps-1:
//   while iteration < max_iterations:
//     one training step; iteration += 1
//     every val_every iterations: validation loss L
//       L < best: best = L, snapshot (parameters, BN statistics, Adam state), bad = 0
//       else bad += 1
//       bad == patience: restore the snapshot, iteration -= patience * val_every, bad = 0, end the round
//   lr /= lr_decay_factor
//
// Consequences worth knowing:
//  - `iteration` is the reference's counter, not the number of optimiser steps: each restore winds it back
//    by patience * val_every (to the iteration of the restored snapshot), so a run can take up to
//    lr_decay_steps * patience * val_every more steps than max_iterations; steps() counts the real ones.
//  - The best loss is never reset between rounds; a round ends only by patience or by max_iterations.
//  - If max_iterations ends the run, the last parameters are kept (reference behaviour); the option
//    restore_best_at_max_iterations asks for the best snapshot instead (restore_at_end()).
//  - After the final patience stop the model is the restored best snapshot.
#pragma once

#include <cstdint>
#include <limits>

namespace v1sysid {

struct EarlyStoppingOptions {
  double learning_rate = 0.002;
  int64_t max_iterations = 10000;
  int val_every = 50;
  int patience = 5;
  int lr_decay_steps = 2;
  double lr_decay_factor = 10.0;
  bool restore_best_at_max_iterations = false;
};

class EarlyStopping {
 public:
  // Everything the policy has counted so far (resumable training states).
  struct State {
    double learning_rate = 0;
    int64_t iteration = 0, steps = 0, best_iteration = -1;
    double best = std::numeric_limits<double>::infinity();
    int bad = 0, round = 0;
    bool finished = false;
  };
  enum class Decision {
    improved,          // snapshot the model now
    not_improved,      // nothing to do
    restore_continue,  // restore the snapshot, continue with the decayed learning_rate()
    restore_stop,      // restore the snapshot; training is over
  };

  explicit EarlyStopping(const EarlyStoppingOptions& o);

  // Whether another training step is to be taken.
  bool running() const { return !m_finished && m_iteration < m_options.max_iterations; }
  // Records one finished training step; returns whether a validation is due now.
  bool step_done();
  // Records the validation loss of the check that step_done() asked for.
  Decision report_validation(double loss);
  // At the end of training: whether the caller must restore the best snapshot (only when max_iterations
  // ended the run, restore_best_at_max_iterations is set and a snapshot exists).
  bool restore_at_end() const;

  double learning_rate() const { return m_lr; }
  int64_t iteration() const { return m_iteration; }
  int64_t steps() const { return m_steps; }
  double best_loss() const { return m_best; }
  int64_t best_iteration() const { return m_best_iteration; }
  int round() const { return m_round; }
  State state() const { return State{m_lr, m_iteration, m_steps, m_best_iteration, m_best, m_bad, m_round, m_finished}; }
  void restore(const State& s);
  // True when the run ended by the patience rule in the last round (not by max_iterations).
  bool stopped_by_patience() const { return m_finished; }

 private:
  EarlyStoppingOptions m_options;
  double m_lr;
  int64_t m_iteration = 0, m_steps = 0, m_best_iteration = -1;
  double m_best = std::numeric_limits<double>::infinity();
  int m_bad = 0, m_round = 0;
  bool m_finished = false;
};

}  // namespace v1sysid
