# sqlite_sink_bench: SqliteSink against one autocommitted INSERT per event with SQLite's
# default settings, on files in a temporary directory on disk.
# Include from bench/CMakeLists.txt: include(${CMAKE_CURRENT_LIST_DIR}/sqlite_sink.cmake)
set(_reqbus_root ${CMAKE_CURRENT_LIST_DIR}/..)
add_executable(sqlite_sink_bench ${_reqbus_root}/bench/sqlite_sink_bench.cpp)
target_include_directories(sqlite_sink_bench PRIVATE ${_reqbus_root})
target_link_libraries(sqlite_sink_bench PRIVATE reqbus::analytics reqbus::bus SQLite::SQLite3
  Threads::Threads)
reqbus_apply_defaults(sqlite_sink_bench)
