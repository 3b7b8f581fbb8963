#include "model/readout.hpp"

#include <cmath>

namespace v1sysid {

// The kinds' factories, each defined in its own file (readout_<kind>.cpp); only this registry calls them.
template <class T>
std::unique_ptr<Readout<T>> make_factorized_readout(const ReadoutConfig& config, ReadoutPlace place);
template <class T>
std::unique_ptr<Readout<T>> make_gaussian_readout(const ReadoutConfig& config, ReadoutPlace place);

double inverse_softplus(double y) { return y + std::log(-std::expm1(-y)); }

template <class T>
std::unique_ptr<Readout<T>> make_readout(const ReadoutConfig& config, ReadoutPlace place) {
  switch (config.kind) {
    case ReadoutKind::factorized: return make_factorized_readout<T>(config, std::move(place));
    case ReadoutKind::gaussian: return make_gaussian_readout<T>(config, std::move(place));
  }
  throw std::logic_error("make_readout: a ReadoutKind without a readout");
}

template std::unique_ptr<Readout<float>> make_readout<float>(const ReadoutConfig&, ReadoutPlace);
template std::unique_ptr<Readout<double>> make_readout<double>(const ReadoutConfig&, ReadoutPlace);

}  // namespace v1sysid
