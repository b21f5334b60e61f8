# cluster_bench: node->node tcp fan-out (plain, CURVE, through a forwarder) against Redis
# pub/sub with the same payloads in the same run. Needs redis-server on PATH at run time
# (Debian: apt-get install redis-server) and links hiredis (libhiredis-dev).
find_package(PkgConfig REQUIRED)
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(HIREDIS_FOUND)
  add_executable(cluster_bench ${CMAKE_CURRENT_LIST_DIR}/cluster_bench.cpp)
  target_include_directories(cluster_bench PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(cluster_bench PRIVATE reqbus::bus cppzmq msgpackc-cxx PkgConfig::HIREDIS Threads::Threads)
  reqbus_apply_defaults(cluster_bench)
else()
  message(STATUS "cluster_bench: hiredis not found (apt-get install libhiredis-dev); not built")
endif()
