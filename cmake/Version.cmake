# Generates version.cpp with the project version, the git hash and the dependency versions found at configure.
# The git hash is taken again at every build, not only at configure: an incremental build after a checkout of
# another commit, or of edited sources, must not report the commit the build folder was configured at (results
# files, checkpoints and `--version` record it). cmake/WriteVersion.cmake rewrites version.cpp only when its text
# changes, so a build of an unchanged tree recompiles nothing.
set(V1SYSID_VERSION_SOURCE ${PROJECT_BINARY_DIR}/generated/version.cpp)
set(_v1_write_version ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DOUTPUT=${V1SYSID_VERSION_SOURCE}
    -DPROJECT_VERSION=${PROJECT_VERSION} -DHDF5_VERSION=${HDF5_VERSION} -P ${PROJECT_SOURCE_DIR}/cmake/WriteVersion.cmake)
execute_process(COMMAND ${_v1_write_version})
add_custom_target(v1sysid_version COMMAND ${_v1_write_version} BYPRODUCTS ${V1SYSID_VERSION_SOURCE} VERBATIM)
