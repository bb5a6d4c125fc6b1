# cmake -DBROKER_DIR=... [-DCORE_BINARY=...] -P check_layers.cmake
# Fails when a room of the broker (broker/<room>/) includes a room it may not
# use, or when the lease core reaches past the standard library and protobuf.
# The rooms are read from the include paths ("core/lease_core.h"), so a new
# header needs no entry here.
cmake_minimum_required(VERSION 3.16)  # IN_LIST in if()

# 1. Which rooms each room may include: its own and the ones its library
#    links in broker/CMakeLists.txt (docs/hacking.md, Layers).
set(rooms core host durable server daemon)
set(may_use_core core)
set(may_use_host core host)
set(may_use_durable core durable)
set(may_use_server core durable server)
set(may_use_daemon core host durable server daemon)

# Every header of a room, by bare name: a quoted include of one without its
# room ("lease_core.h") hides which room it reaches into.
set(room_headers "")
foreach(room ${rooms})
  file(GLOB headers RELATIVE ${BROKER_DIR}/${room} ${BROKER_DIR}/${room}/*.h)
  list(APPEND room_headers ${headers})
endforeach()

set(problems "")
set(checked 0)
foreach(room ${rooms})
  file(GLOB sources ${BROKER_DIR}/${room}/*.h ${BROKER_DIR}/${room}/*.cpp)
  foreach(source ${sources})
    math(EXPR checked "${checked} + 1")
    file(STRINGS ${source} includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
    foreach(line ${includes})
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" path "${line}")
      if(path MATCHES "^([a-z_]+)/")
        set(target_room ${CMAKE_MATCH_1})
        if(target_room IN_LIST rooms AND NOT target_room IN_LIST may_use_${room})
          string(APPEND problems "\n  ${source}: ${line} (${room} may use: ${may_use_${room}})")
        endif()
      elseif(path IN_LIST room_headers)
        string(APPEND problems "\n  ${source}: ${line} (a room's header without its room: write \"<room>/${path}\")")
      endif()
    endforeach()
  endforeach()
endforeach()

# 2. The core's sources: no header of a system library or of the OS (the
#    core's own rooms rule above keeps out every other room).
set(forbidden
  "<spdlog" "<fmt/" "<boost" "<systemd" "<sys/capability.h>" "<zlib.h>" "<CLI/"
  "<unistd.h>" "<fcntl.h>" "<pwd.h>" "<grp.h>" "<signal.h>" "<sys/socket.h>" "<sys/stat.h>"
  "<sys/random.h>" "<sys/inotify.h>" "<sys/wait.h>" "<dirent.h>" "<thread>" "<mutex>" "<fstream>"
  "\"unique_fd.h\"")
file(GLOB core_sources ${BROKER_DIR}/core/*.h ${BROKER_DIR}/core/*.cpp)
foreach(source ${core_sources})
  file(STRINGS ${source} includes REGEX "^#include")
  foreach(line ${includes})
    foreach(bad ${forbidden})
      string(FIND "${line}" "${bad}" at)
      if(NOT at EQUAL -1)
        string(APPEND problems "\n  ${source}: ${line} (the core uses the standard library and protobuf only)")
      endif()
    endforeach()
  endforeach()
endforeach()

# 3. The core's test binary (core + GoogleTest, statically): which shared
#    libraries it needs.
set(needed "")
if(CORE_BINARY)
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
endif()

if(problems)
  message(FATAL_ERROR "a room reaches past the rooms it may use (docs/hacking.md, Layers):${problems}")
endif()
list(LENGTH needed m)
message(STATUS "layers: ${checked} sources of ${BROKER_DIR} checked; the core's test binary needs ${m} shared libraries, all allowed")
