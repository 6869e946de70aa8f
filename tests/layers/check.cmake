# The layering of docs/architecture.md, checked: every file of include/crew and
# src includes only from its own module or from modules of lower layers. So
# there are no include cycles and nothing reaches upward (cluster does not
# include http, the loop knows nothing of IPC).
#
#   cmake -DSOURCE_DIR=<crew's root> -P check.cmake
cmake_minimum_required(VERSION 3.25)

# module: layer. Files map to modules by name (detail files by their own names).
set(layers
  error:0 unique_function:0 utf8:0 adaptive_mutex:0 recycling_allocator:0
  buffer:1 loop:1 url:1
  work:2 task:2 shared_buffer:2 stop_relay:2 spinner:2
  timer:3 signal:3 stream:3 message:3
  tcp:4 broadcast_channel:4 readline:4
  ipc:5
  child_process:6 worker_threads:6
  cluster:7 http:7 pool:7
  crew:8)
# file name (without extension) -> module, where they differ. The handle rule
# is the loop's (a loop closes its handles); a message carries ports and a port
# carries messages, so they are one module (message.hpp does not include
# message_port.hpp; message.cpp destroys the ports a message holds).
set(aliases
  handle=loop thread_context=loop stream_state=stream message_port=message port_core=message inline_value=message
  ipc_state=ipc tcp_state=tcp histogram=pool job_queue=pool
  exec=child_process spawn=child_process reaper=child_process proc=child_process process_pool=pool
  cluster_primary=cluster cluster_wire=cluster)

function(module_of file out)
  get_filename_component(name ${file} NAME_WE)
  foreach(alias ${aliases})
    string(REPLACE "=" ";" pair ${alias})
    list(GET pair 0 from)
    list(GET pair 1 to)
    if(name STREQUAL from)
      set(name ${to})
    endif()
  endforeach()
  string(REGEX MATCH "^(http|cluster)_" prefix "${name}")  # http_parser.cpp and the like
  if(prefix)
    string(REGEX REPLACE "_$" "" name "${prefix}")
  endif()
  set(${out} ${name} PARENT_SCOPE)
endfunction()

function(layer_of module out)
  set(${out} "" PARENT_SCOPE)
  foreach(entry ${layers})
    string(REPLACE ":" ";" pair ${entry})
    list(GET pair 0 name)
    list(GET pair 1 layer)
    if(name STREQUAL module)
      set(${out} ${layer} PARENT_SCOPE)
    endif()
  endforeach()
endfunction()

file(GLOB_RECURSE files ${SOURCE_DIR}/include/crew/*.hpp ${SOURCE_DIR}/src/*.hpp ${SOURCE_DIR}/src/*.cpp)
set(failures "")
foreach(file ${files})
  module_of(${file} module)
  layer_of(${module} layer)
  if(layer STREQUAL "")
    string(APPEND failures "\n  ${file}: module '${module}' has no layer in tests/layers/check.cmake")
    continue()
  endif()
  file(STRINGS ${file} includes REGEX "^#include \"(crew/|detail/)")
  foreach(line ${includes})
    string(REGEX REPLACE "^#include \"([^\"]+)\".*" "\\1" included "${line}")
    module_of(${included} other)
    layer_of(${other} other_layer)
    if(other_layer STREQUAL "")
      string(APPEND failures "\n  ${file}: includes ${included}, whose module '${other}' has no layer")
    elseif(other_layer GREATER layer OR (other_layer EQUAL layer AND NOT other STREQUAL module))
      string(APPEND failures "\n  ${file} (${module}, layer ${layer}) includes ${included} (${other}, layer ${other_layer})")
    endif()
  endforeach()
endforeach()
if(failures)
  message(FATAL_ERROR "includes against the layering:${failures}")
endif()
