# Compiles CASE, a program that must not build, and checks that the compiler's
# message names the pattern: the regular expression on the case's first line,
# `// expect: REGEX`.
#
#   cmake -DCOMPILER=<c++> -DINCLUDE=<crew's include dir> -DCASE=<file> -P check.cmake
cmake_minimum_required(VERSION 3.25)

file(STRINGS ${CASE} first LIMIT_COUNT 1)
string(REGEX REPLACE "^// expect: " "" expected "${first}")
execute_process(COMMAND ${COMPILER} -std=c++20 -fsyntax-only -I${INCLUDE} ${CASE}
                RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(status EQUAL 0)
  message(FATAL_ERROR "${CASE} compiled; it must be rejected")
endif()
if(NOT output MATCHES "${expected}")
  message(FATAL_ERROR "${CASE} failed to compile, but the message does not say '${expected}':\n${output}")
endif()
