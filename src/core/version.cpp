#include "core/version.hpp"

#include <Kokkos_Core.hpp>
#include <dlfcn.h>
#include <hdf5.h>
#include <mpi.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <climits>
#include <cstdlib>
#include <sstream>
#include <type_traits>

extern "C" void sgemm_();  // only its address is taken, to find which BLAS the dynamic linker chose

namespace v1sysid {

std::string kokkos_version() {
  std::ostringstream s;
  s << KOKKOS_VERSION / 10000 << '.' << KOKKOS_VERSION / 100 % 100 << '.' << KOKKOS_VERSION % 100;
  return s.str();
}

std::string kokkos_backends() {
  std::string b;
  auto add = [&b](const char* name) { b += (b.empty() ? "" : ",") + std::string(name); };
#ifdef KOKKOS_ENABLE_CUDA
  add("Cuda");
#endif
#ifdef KOKKOS_ENABLE_HIP
  add("HIP");
#endif
#ifdef KOKKOS_ENABLE_SYCL
  add("SYCL");
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  add("OpenMP");
#endif
#ifdef KOKKOS_ENABLE_THREADS
  add("Threads");
#endif
#ifdef KOKKOS_ENABLE_SERIAL
  add("Serial");
#endif
  return b;
}

std::string blas_library() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&sgemm_), &info) == 0 || info.dli_fname == nullptr) return "unknown";
  char resolved[PATH_MAX];
  if (realpath(info.dli_fname, resolved) != nullptr) return resolved;
  return info.dli_fname;
}

std::string blas_config() {
  using ConfigFn = char* (*)();
  auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  if (fn == nullptr) return blas_library().find("openblas") != std::string::npos ? "OpenBLAS" : "reference or other";
  std::string cfg = fn();
  using CoreFn = char* (*)();
  if (auto core = reinterpret_cast<CoreFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) {
    cfg += std::string(" core=") + core();
  }
  using ThreadsFn = int (*)();
  if (auto threads = reinterpret_cast<ThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) {
    cfg += " threads=" + std::to_string(threads());
  }
  return cfg;
}

std::string version_report() {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  char mpi_lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi_lib, &len);
  std::string mpi(mpi_lib, static_cast<size_t>(len));
  if (auto nl = mpi.find_first_of("\n,"); nl != std::string::npos) mpi.resize(nl);
  std::ostringstream s;
  s << "v1sysid " << version_string() << " (git " << git_hash() << ")\n"
    << "Kokkos " << kokkos_version() << ", backends: " << kokkos_backends() << "\n"
    << "BLAS: " << blas_library() << " [" << blas_config() << "]\n"
    << "HDF5 " << maj << '.' << min << '.' << rel << " (parallel)\n"
    << "MPI: " << mpi << "\n";
  return s.str();
}

std::string openmp_threads_warning(bool openmp_default_space, int threads, const char* wait_policy,
                                   const char* proc_bind) {
  if (!openmp_default_space || threads < 2) return "";
  auto lower = [](const char* v) {
    std::string s = v ? v : "";
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  const std::string policy = lower(wait_policy), bind = lower(proc_bind);
  // OMP_PROC_BIND may list one policy per nesting level ("spread,close"): the first level is the one that counts.
  const std::string first = bind.substr(0, bind.find(','));
  const bool spinning = policy != "passive";
  const bool bound = first == "true" || first == "spread" || first == "close" || first == "master" || first == "primary";
  if (!spinning && !bound) return "";
  std::string problem;
  if (spinning)
    problem = "OMP_WAIT_POLICY is " + (wait_policy ? "'" + std::string(wait_policy) + "'" : std::string("unset")) +
              " (the OpenMP threads spin between kernels and take the cores from OpenBLAS's threads)";
  if (bound)
    problem += std::string(spinning ? " and " : "") + "OMP_PROC_BIND is '" + std::string(proc_bind) +
               "' (OpenBLAS's threads inherit the main thread's binding and share one core)";
  return problem + ": a training step runs at 0.55-0.7 of the Serial build's speed on 2 cores; export " +
         "OMP_WAIT_POLICY=passive OMP_PROC_BIND=false before starting v1sysid";
}

std::string openmp_threads_warning() {
#ifdef KOKKOS_ENABLE_OPENMP
  const bool openmp = std::is_same_v<Kokkos::DefaultExecutionSpace, Kokkos::OpenMP>;
#else
  const bool openmp = false;
#endif
  return openmp_threads_warning(openmp, Kokkos::DefaultExecutionSpace().concurrency(), std::getenv("OMP_WAIT_POLICY"),
                                std::getenv("OMP_PROC_BIND"));
}

}  // namespace v1sysid
