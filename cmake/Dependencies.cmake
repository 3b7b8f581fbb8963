# Finds every third-party dependency and gathers them into the interface target v1sysid_deps.
# Works with Debian 12's Trilinos-packaged Kokkos 3.4 (needs the shim below) and a spack Kokkos 4.x.

find_package(MPI REQUIRED COMPONENTS C CXX)
find_package(Kokkos 3.4 REQUIRED)
find_package(KokkosKernels REQUIRED)

# Debian's TriBITS-generated config points Kokkos::kokkos at a non-existent /usr/lib/include and has no
# namespaced kernels target. Both fixes are no-ops on a proper Kokkos 4 install.
if(Kokkos_INCLUDE_DIRS)
  get_filename_component(_v1_kokkos_inc "${Kokkos_INCLUDE_DIRS}" ABSOLUTE)
endif()
get_target_property(_v1_kinc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
set(_v1_kinc_ok TRUE)
if(_v1_kinc)   # unset (includes come through linked targets only) is fine as it is
  foreach(_d IN LISTS _v1_kinc)
    if(NOT _d MATCHES "^\\$<" AND NOT EXISTS "${_d}")
      set(_v1_kinc_ok FALSE)
    endif()
  endforeach()
endif()
if(NOT _v1_kinc_ok AND _v1_kokkos_inc)
  message(STATUS "v1sysid: patching Kokkos::kokkos include directory to ${_v1_kokkos_inc}")
  set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_v1_kokkos_inc}")
endif()
if(NOT TARGET Kokkos::kokkoskernels)
  add_library(Kokkos::kokkoskernels INTERFACE IMPORTED)
  set_target_properties(Kokkos::kokkoskernels PROPERTIES
    INTERFACE_LINK_LIBRARIES "trilinos_kokkoskernels;Kokkos::kokkos")
endif()

if(V1SYSID_ENABLE_CUDA)
  kokkos_check(DEVICES CUDA)       # fails at configure time rather than silently running on the CPU
endif()
if(V1SYSID_ENABLE_OPENMP)
  kokkos_check(DEVICES OpenMP)
endif()
message(STATUS "v1sysid: Kokkos ${Kokkos_VERSION}, devices: ${Kokkos_DEVICES}")

set(HDF5_PREFER_PARALLEL ON)   # FindHDF5 would otherwise pick a co-installed serial libhdf5-dev
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "v1sysid needs a parallel (MPI) HDF5, but FindHDF5 found a serial one "
                      "(${HDF5_C_INCLUDE_DIRS}). On Debian: apt-get install libhdf5-openmpi-dev; "
                      "if libhdf5-dev is also installed, pass -DHDF5_C_COMPILER_EXECUTABLE=/usr/bin/h5pcc.")
endif()

find_package(yaml-cpp REQUIRED)
if(TARGET yaml-cpp::yaml-cpp)      # yaml-cpp >= 0.8
  set(V1SYSID_YAML_TARGET yaml-cpp::yaml-cpp)
else()                             # yaml-cpp 0.7 (Debian 12)
  set(V1SYSID_YAML_TARGET yaml-cpp)
endif()

find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
# libzip's CMake config on Debian 12 insists on the separately packaged zipcmp/zipmerge/ziptool
# executables, so use its pkg-config file instead.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)
find_package(JPEG REQUIRED)
find_package(PNG REQUIRED)
# WebP photos (gcompris-qt-data); libwebp has no CMake config on Debian 12.
pkg_check_modules(LIBWEBP REQUIRED IMPORTED_TARGET libwebp)

# SHA-256 dataset digests that `sha256sum` reproduces (data/digest.hpp).
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

add_library(v1sysid_deps INTERFACE)
target_link_libraries(v1sysid_deps INTERFACE
  Kokkos::kokkoskernels Kokkos::kokkos hdf5::hdf5 MPI::MPI_CXX ${V1SYSID_YAML_TARGET}
  nlohmann_json::nlohmann_json PkgConfig::LIBZIP JPEG::JPEG PNG::PNG PkgConfig::LIBWEBP OpenSSL::Crypto)
# Older FindHDF5 versions do not define hdf5::hdf5's include directories on every platform.
target_include_directories(v1sysid_deps SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS})
