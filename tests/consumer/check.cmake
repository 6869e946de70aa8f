# One way of using crew from another project, run by ctest (tests/CMakeLists.txt):
#   STEP=install        installs crew from BUILD_DIR into WORK_DIR/prefix
#   STEP=package        builds and runs the consumer project with find_package(crew) from that prefix
#   STEP=pkg-config     compiles and runs the consumer with the flags `pkg-config crew` gives, which
#                       name no language standard: the consumer chooses one (C++20 or later)
#   STEP=subdirectory   builds and runs the consumer project with crew's source tree inside it
#   STEP=fetchcontent   the same through FetchContent
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "failed (${status}): ${ARGN}\n${out}")
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE ${prefix})
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
elseif(STEP STREQUAL "pkg-config")
  file(GLOB pc_dir LIST_DIRECTORIES true ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir} pkg-config --cflags --libs crew
                  RESULT_VARIABLE status OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "pkg-config does not find crew in ${pc_dir}")
  endif()
  if(flags MATCHES "-std=")
    message(FATAL_ERROR "crew.pc chooses the language standard for its users: ${flags}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  # An older standard is refused with one clear line.
  execute_process(COMMAND ${CXX} -std=c++17 -fsyntax-only ${CONSUMER_DIR}/main.cpp ${flags}
                  RESULT_VARIABLE status ERROR_VARIABLE out)
  if(status EQUAL 0 OR NOT out MATCHES "crew needs C\\+\\+20 or later")
    message(FATAL_ERROR "C++17 is not refused clearly (${status}):\n${out}")
  endif()
  run(${CXX} -std=c++20 ${CONSUMER_DIR}/main.cpp -o ${WORK_DIR}/pkg-config-consumer ${flags})
  run(${WORK_DIR}/pkg-config-consumer)
else()
  set(build ${WORK_DIR}/${STEP}-build)
  file(REMOVE_RECURSE ${build})
  run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${build} -G Ninja -DCMAKE_BUILD_TYPE=Release -DCREW_VIA=${STEP}
      -DCMAKE_PREFIX_PATH=${prefix} -DCREW_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_CXX_COMPILER=${CXX}
      -DCMAKE_C_COMPILER=${CC} -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER} -DCMAKE_C_COMPILER_LAUNCHER=${LAUNCHER})
  run(${CMAKE_COMMAND} --build ${build} -j 2)
  run(${build}/consumer)
endif()
