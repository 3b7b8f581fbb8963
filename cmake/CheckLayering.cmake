# cmake -DV1SYSID_SOURCE_DIR=<repo> -P cmake/CheckLayering.cmake: the layering check of cmake/Layers.cmake as a
# script, run by the test Layering.IncludesGoDownward so that an include added after the configure is caught.
cmake_minimum_required(VERSION 3.16)
if(NOT V1SYSID_SOURCE_DIR)
  message(FATAL_ERROR "CheckLayering.cmake: pass -DV1SYSID_SOURCE_DIR=<the repository>")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/Layers.cmake)
v1sysid_check_layering(${V1SYSID_SOURCE_DIR})
message(STATUS "v1sysid layering: every include of src/ goes downward")
