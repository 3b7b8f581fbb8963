# The folders of src/, bottom to top, each with the folders it may use directly. A folder may include and link
# only what lies below it (these and, transitively, theirs); one static library per folder links exactly these,
# so code calling upward fails to link, and v1sysid_check_layering() fails the configure (and the test
# Layering.IncludesGoDownward fails the test run) on an #include that goes upward or sideways.
# This file is read by CMakeLists.txt and by cmake/CheckLayering.cmake (cmake -P), so the rule is written once.
set(V1SYSID_FOLDERS core config layers io data metrics optim model train sim analysis sweep bench apps)
set(V1SYSID_USES_core     "")
set(V1SYSID_USES_config   core)
set(V1SYSID_USES_layers   core)
set(V1SYSID_USES_io       core)
set(V1SYSID_USES_data     core io)
set(V1SYSID_USES_metrics  core data)
set(V1SYSID_USES_optim    core)
set(V1SYSID_USES_model    core config layers)
set(V1SYSID_USES_train    core data io metrics model optim)
set(V1SYSID_USES_sim      core config data io)
set(V1SYSID_USES_analysis core data io model)
set(V1SYSID_USES_sweep    core config io model train)
set(V1SYSID_USES_bench    core model train)
set(V1SYSID_USES_apps     core data io model train sim analysis sweep bench)

# V1SYSID_BELOW_<folder>: every folder that <folder> may include (its uses and, transitively, theirs).
foreach(_v1_folder IN LISTS V1SYSID_FOLDERS)
  set(_v1_below "")
  foreach(_v1_used IN LISTS V1SYSID_USES_${_v1_folder})
    list(FIND V1SYSID_FOLDERS ${_v1_used} _v1_used_rank)
    list(FIND V1SYSID_FOLDERS ${_v1_folder} _v1_rank)
    if(_v1_used_rank EQUAL -1 OR NOT _v1_used_rank LESS _v1_rank)
      message(FATAL_ERROR "cmake/Layers.cmake: folder '${_v1_folder}' uses '${_v1_used}', which is not listed "
                          "below it in V1SYSID_FOLDERS; a folder may use only folders listed before it")
    endif()
    list(APPEND _v1_below ${_v1_used} ${V1SYSID_BELOW_${_v1_used}})
  endforeach()
  list(REMOVE_DUPLICATES _v1_below)
  set(V1SYSID_BELOW_${_v1_folder} ${_v1_below})
endforeach()

# Fails with one message naming every #include "<folder>/..." of src/ that is not in the including folder or below it.
function(v1sysid_check_layering source_dir)
  set(_violations "")
  foreach(_folder IN LISTS V1SYSID_FOLDERS)
    file(GLOB _files ${source_dir}/src/${_folder}/*.cpp ${source_dir}/src/${_folder}/*.hpp)
    set(_allowed ${_folder} ${V1SYSID_BELOW_${_folder}})
    foreach(_file IN LISTS _files)
      file(STRINGS ${_file} _includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"[a-z_]+/")
      foreach(_line IN LISTS _includes)
        string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([a-z_]+)/.*" "\\1" _target "${_line}")
        list(FIND _allowed ${_target} _found)
        if(_found EQUAL -1 AND _target IN_LIST V1SYSID_FOLDERS)
          file(RELATIVE_PATH _rel ${source_dir} ${_file})
          string(APPEND _violations "  ${_rel}: ${_line}\n")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(NOT _violations STREQUAL "")
    message(FATAL_ERROR "v1sysid layering: these includes go upward or sideways (cmake/Layers.cmake lists what "
                        "each folder of src/ may use); move the code they need down to a folder both may use:\n"
                        "${_violations}")
  endif()
endfunction()
