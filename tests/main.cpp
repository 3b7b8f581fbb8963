// Shared main of every GoogleTest executable: MPI (singleton unless under mpiexec) and Kokkos, except when
// gtest only lists tests, so test discovery works on machines without the execution space (login nodes).
#include "io/h5.hpp"

#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <memory>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing |= std::strncmp(argv[i], "--gtest_list_tests", 18) == 0;
  ::testing::InitGoogleTest(&argc, argv);
  if (listing) return RUN_ALL_TESTS();
  // Dataset digests of test runs (data/digest.hpp) are cached in a folder of the build, not in the user's
  // ~/.cache; commands the tests start inherit it. A test that needs its own cache sets the variable itself.
  setenv("V1SYSID_CACHE_DIR", V1SYSID_TEST_CACHE_DIR, 0);
  MPI_Init(&argc, &argv);
  v1sysid::h5::silence_library_errors();
  int code = 0;
  {
    int kokkos_argc = 1;
    Kokkos::ScopeGuard kokkos(kokkos_argc, argv);
    code = RUN_ALL_TESTS();
  }
  MPI_Finalize();
  return code;
}
