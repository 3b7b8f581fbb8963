# cmake -DSOURCE_DIR=... -DOUTPUT=... -DPROJECT_VERSION=... -DHDF5_VERSION=... -P WriteVersion.cmake
# Writes version.cpp from version.cpp.in with the git hash of SOURCE_DIR now ("-dirty" when tracked files differ
# from HEAD; "unknown" outside git). configure_file leaves OUTPUT untouched when its text is unchanged, so a build
# recompiles it only when the hash (or a version) changed.
execute_process(COMMAND git rev-parse --short=12 HEAD
                WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE V1SYSID_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET RESULT_VARIABLE _v1_git_rc)
if(NOT _v1_git_rc EQUAL 0 OR V1SYSID_GIT_HASH STREQUAL "")
  set(V1SYSID_GIT_HASH "unknown")
endif()
execute_process(COMMAND git status --porcelain --untracked-files=no
                WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE _v1_dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT _v1_dirty STREQUAL "")
  string(APPEND V1SYSID_GIT_HASH "-dirty")
endif()
configure_file(${SOURCE_DIR}/cmake/version.cpp.in ${OUTPUT} @ONLY)
