#include "train/early_stopping.hpp"

#include "core/error.hpp"

namespace v1sysid {

EarlyStopping::EarlyStopping(const EarlyStoppingOptions& o) : m_options(o), m_lr(o.learning_rate) {
  if (o.val_every < 1 || o.patience < 1 || o.lr_decay_steps < 1 || o.max_iterations < 1 || !(o.lr_decay_factor > 0))
    throw ConfigError("invalid early-stopping options", "train",
                      "val_every, patience, lr_decay_steps, max_iterations and lr_decay_factor must be positive");
}

bool EarlyStopping::step_done() {
  ++m_iteration;
  ++m_steps;
  return m_iteration % m_options.val_every == 0;
}

EarlyStopping::Decision EarlyStopping::report_validation(double loss) {
  // A NaN never compares less, so it counts as "not improved"; the trainer reports divergence before this.
  if (loss < m_best) {
    m_best = loss;
    m_best_iteration = m_iteration;
    m_bad = 0;
    return Decision::improved;
  }
  if (++m_bad < m_options.patience) return Decision::not_improved;
  m_bad = 0;
  m_iteration -= static_cast<int64_t>(m_options.patience) * m_options.val_every;
  m_lr /= m_options.lr_decay_factor;
  ++m_round;
  if (m_round >= m_options.lr_decay_steps) {
    m_finished = true;
    return Decision::restore_stop;
  }
  return Decision::restore_continue;
}

void EarlyStopping::restore(const State& s) {
  m_lr = s.learning_rate;
  m_iteration = s.iteration;
  m_steps = s.steps;
  m_best_iteration = s.best_iteration;
  m_best = s.best;
  m_bad = s.bad;
  m_round = s.round;
  m_finished = s.finished;
}

bool EarlyStopping::restore_at_end() const {
  return !m_finished && m_options.restore_best_at_max_iterations && m_best_iteration >= 0;
}

}  // namespace v1sysid
