// Build and runtime identification: version, git hash, Kokkos version and backends, BLAS in use.
#pragma once

#include <string>

namespace v1sysid {

const char* version_string();      // generated at configure time
const char* git_hash();            // taken at build time (cmake/Version.cmake); "-dirty" when the tree had changes
const char* hdf5_version_built();  // generated at configure time

std::string kokkos_version();  // e.g. "3.4.1"
std::string kokkos_backends(); // e.g. "Serial" or "OpenMP,Serial"
std::string blas_library();    // the shared object that provides sgemm_, e.g. ".../libopenblas.so.0"
std::string blas_config();     // OpenBLAS' own description (core type, threads) when OpenBLAS is in use
std::string version_report();  // multi-line text for `v1sysid --version`

// The start-up warning of an OpenMP build whose threads get in the way of OpenBLAS's own threads (the GEMMs, most
// of a training step), measured on 2 cores (docs/performance.md, "Serial, OpenMP and PyTorch"): threads that spin
// between kernels (OMP_WAIT_POLICY other than passive) take the cores from OpenBLAS (0.55 of the Serial build's
// speed), and threads bound to cores (OMP_PROC_BIND true, spread, close, master or primary) pin OpenBLAS's threads,
// which inherit the main thread's binding, to one core (0.7); passive and unbound, 1.0-1.2. Empty when the default
// execution space is not OpenMP or has one thread, or both settings are right. nullptr: the variable is unset.
std::string openmp_threads_warning(bool openmp_default_space, int threads, const char* wait_policy,
                                   const char* proc_bind);
// The same for this process (the default execution space and the environment).
std::string openmp_threads_warning();

}  // namespace v1sysid
