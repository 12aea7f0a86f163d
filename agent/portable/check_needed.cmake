# Fails when the portable agent needs a shared library other than those ALLOWED (glibc's, and
# libpq when it is linked shared): a new dependency must be linked statically too (see
# CMakeLists.txt here). Usage: cmake -DBINARY=F -DALLOWED='libc|libm|...' -P
if(NOT ALLOWED)
  message(FATAL_ERROR "check_needed.cmake: -DALLOWED is missing")
endif()
execute_process(COMMAND readelf -d "${BINARY}" OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${BINARY} failed")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${dynamic}")
set(unexpected)
foreach(entry ${needed})
  string(REGEX REPLACE "Shared library: \\[(.*)\\]" "\\1" lib "${entry}")
  if(NOT lib MATCHES "^(${ALLOWED})\\.so")
    list(APPEND unexpected "${lib}")
  endif()
endforeach()
if(unexpected)
  message(FATAL_ERROR "${BINARY} is not portable: it needs ${unexpected}; link it statically "
                      "(agent/portable/CMakeLists.txt) or build with -DVIGIL_PORTABLE_AGENT=OFF")
endif()
