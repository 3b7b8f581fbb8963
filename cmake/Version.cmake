# Generates version.cpp with the project version, git hash and the dependency versions found at configure.
execute_process(COMMAND git rev-parse --short=12 HEAD
                WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE V1SYSID_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET RESULT_VARIABLE _v1_git_rc)
if(NOT _v1_git_rc EQUAL 0 OR V1SYSID_GIT_HASH STREQUAL "")
  set(V1SYSID_GIT_HASH "unknown")
endif()
execute_process(COMMAND git status --porcelain --untracked-files=no
                WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE _v1_dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT _v1_dirty STREQUAL "")
  string(APPEND V1SYSID_GIT_HASH "-dirty")
endif()
set(V1SYSID_VERSION_SOURCE ${PROJECT_BINARY_DIR}/generated/version.cpp)
configure_file(${PROJECT_SOURCE_DIR}/cmake/version.cpp.in ${V1SYSID_VERSION_SOURCE} @ONLY)
