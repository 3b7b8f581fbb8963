// Build and runtime identification: version, git hash, Kokkos version and backends, BLAS in use.
#pragma once

#include <string>

namespace v1sysid {

const char* version_string();      // generated at configure time
const char* git_hash();            // generated at configure time; "-dirty" when the tree had changes
const char* hdf5_version_built();  // generated at configure time

std::string kokkos_version();  // e.g. "3.4.1"
std::string kokkos_backends(); // e.g. "Serial" or "OpenMP,Serial"
std::string blas_library();    // the shared object that provides sgemm_, e.g. ".../libopenblas.so.0"
std::string blas_config();     // OpenBLAS' own description (core type, threads) when OpenBLAS is in use
std::string version_report();  // multi-line text for `v1sysid --version`

// The start-up warning of an OpenMP build whose threads spin between kernels (OMP_WAIT_POLICY other than
// passive): OpenBLAS's own threads then fight them for the cores, and a training step runs at 0.6-0.7 of the
// Serial build's speed on 2 cores instead of 1.0-1.2 (docs/performance.md, "Serial, OpenMP and PyTorch"). Empty
// when the default execution space is not OpenMP, has one thread, or the policy is passive. `wait_policy`: the
// environment's OMP_WAIT_POLICY (nullptr when unset).
std::string openmp_wait_policy_warning(bool openmp_default_space, int threads, const char* wait_policy);
// The same for this process (the default execution space and the environment).
std::string openmp_wait_policy_warning();

}  // namespace v1sysid
