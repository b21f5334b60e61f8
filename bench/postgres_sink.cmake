# postgres_sink_bench: PostgresSink against one autocommitted INSERT per event, on a private
# PostgreSQL server it starts itself (tests/support/postgres_server.cpp, which has no Boost
# dependency). Include from bench/CMakeLists.txt: include(${CMAKE_CURRENT_LIST_DIR}/postgres_sink.cmake)
set(_reqbus_root ${CMAKE_CURRENT_LIST_DIR}/..)
add_executable(postgres_sink_bench
  ${_reqbus_root}/bench/postgres_sink_bench.cpp
  ${_reqbus_root}/tests/support/postgres_server.cpp)
target_include_directories(postgres_sink_bench PRIVATE ${_reqbus_root})
target_link_libraries(postgres_sink_bench PRIVATE reqbus::analytics reqbus::bus PostgreSQL::PostgreSQL
  Threads::Threads)
reqbus_apply_defaults(postgres_sink_bench)
