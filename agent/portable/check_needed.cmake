# Fails when the portable agent needs a shared library other than glibc's and libpq: a new
# dependency must be linked statically too (see CMakeLists.txt here). Usage: cmake -DBINARY=F -P
execute_process(COMMAND readelf -d "${BINARY}" OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${BINARY} failed")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${dynamic}")
set(unexpected)
foreach(entry ${needed})
  string(REGEX REPLACE "Shared library: \\[(.*)\\]" "\\1" lib "${entry}")
  if(NOT lib MATCHES "^(libc|libm|libpq|libdl|libpthread|librt|ld-linux-x86-64|ld-linux-aarch64)\\.so")
    list(APPEND unexpected "${lib}")
  endif()
endforeach()
if(unexpected)
  message(FATAL_ERROR "${BINARY} is not portable: it needs ${unexpected}; link it statically "
                      "(agent/portable/CMakeLists.txt) or build with -DVIGIL_PORTABLE_AGENT=OFF")
endif()
