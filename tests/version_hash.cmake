# cmake -DV1SYSID_SOURCE_DIR=... -DWORK_DIR=... -P version_hash.cmake
# The git hash a build reports is the one of the tree it was built from, also in an incremental build after a
# commit or an edit (a configure-time hash stayed at the commit the build folder was configured at). Builds the
# fixture project (tests/fixtures/version_hash, with the real cmake/Version.cmake, WriteVersion.cmake and
# version.cpp.in) in a fresh git repository, then commits, builds again, edits, builds again.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/repo/cmake ${WORK_DIR}/repo/src/core)
file(COPY ${V1SYSID_SOURCE_DIR}/tests/fixtures/version_hash/CMakeLists.txt
          ${V1SYSID_SOURCE_DIR}/tests/fixtures/version_hash/print_hash.cpp DESTINATION ${WORK_DIR}/repo)
file(COPY ${V1SYSID_SOURCE_DIR}/cmake/Version.cmake ${V1SYSID_SOURCE_DIR}/cmake/WriteVersion.cmake
          ${V1SYSID_SOURCE_DIR}/cmake/version.cpp.in DESTINATION ${WORK_DIR}/repo/cmake)
file(COPY ${V1SYSID_SOURCE_DIR}/src/core/version.hpp DESTINATION ${WORK_DIR}/repo/src/core)
set(repo ${WORK_DIR}/repo)

function(run)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${repo} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()
function(commit message)
  run(git add -A)
  run(git -c user.name=test -c user.email=test@example.invalid commit -q -m ${message})
endfunction()
function(expect_hash what)  # builds, then compares the printed hash with HEAD's (+ suffix ARGV1)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  execute_process(COMMAND ${WORK_DIR}/build/print_hash OUTPUT_VARIABLE printed OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${repo} OUTPUT_VARIABLE head
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT printed STREQUAL "${head}${ARGV1}")
    message(FATAL_ERROR "${what}: the build reports git ${printed}, the tree is at ${head}${ARGV1}")
  endif()
  message(STATUS "${what}: git ${printed}")
endfunction()

run(git init -q)
file(WRITE ${repo}/notes.txt "first\n")
commit(first)
run(${CMAKE_COMMAND} -S ${repo} -B ${WORK_DIR}/build)
expect_hash("configured and built")
file(WRITE ${repo}/notes.txt "second\n")
commit(second)
expect_hash("rebuilt after a commit, without configuring")
file(WRITE ${repo}/notes.txt "edited\n")
expect_hash("rebuilt after an edit" "-dirty")
