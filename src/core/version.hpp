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

}  // namespace v1sysid
