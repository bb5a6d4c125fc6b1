# cmake -DCORE_DIR=... -DCORE_BINARY=... -P check_layers.cmake
# Fails when the lease core reaches past the standard library and protobuf.

# 1. Sources: no header of a system library, of the OS, or of another layer.
set(forbidden
  "<spdlog" "<fmt/" "<boost" "<systemd" "<sys/capability.h>" "<zlib.h>" "<CLI/"
  "<unistd.h>" "<fcntl.h>" "<pwd.h>" "<grp.h>" "<signal.h>" "<sys/socket.h>" "<sys/stat.h>"
  "<sys/random.h>" "<sys/inotify.h>" "<sys/wait.h>" "<dirent.h>" "<thread>" "<mutex>" "<fstream>"
  "\"linux_host.h\"" "\"display_probe.h\"" "\"lease_journal.h\"" "\"broker_server.h\"" "\"config.h\""
  "\"log_sink.h\"" "\"process_inspector.h\"" "\"unique_fd.h\"")
file(GLOB sources ${CORE_DIR}/*.h ${CORE_DIR}/*.cpp)
set(problems "")
foreach(source ${sources})
  file(STRINGS ${source} includes REGEX "^#include")
  foreach(line ${includes})
    foreach(bad ${forbidden})
      string(FIND "${line}" "${bad}" at)
      if(NOT at EQUAL -1)
        string(APPEND problems "\n  ${source}: ${line}")
      endif()
    endforeach()
  endforeach()
endforeach()

# 2. The test binary (core + GoogleTest, statically): which shared libraries
#    it needs.
execute_process(COMMAND readelf -d ${CORE_BINARY} OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${CORE_BINARY} failed")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${dynamic}")
set(allowed "^(libprotobuf\\.so|libstdc\\+\\+\\.so|libm\\.so|libgcc_s\\.so|libc\\.so|libpthread\\.so|libdl\\.so|librt\\.so|ld-linux)")
foreach(entry ${needed})
  string(REGEX REPLACE "Shared library: \\[([^]]+)\\]" "\\1" lib "${entry}")
  if(NOT lib MATCHES "${allowed}")
    string(APPEND problems "\n  the core's tests need ${lib}")
  endif()
endforeach()

if(problems)
  message(FATAL_ERROR "the lease core reaches past the standard library and protobuf:${problems}")
endif()
list(LENGTH sources n)
list(LENGTH needed m)
message(STATUS "core: ${n} sources checked; the test binary needs ${m} shared libraries, all allowed")
