# ingest_bench: reqbus's combined-log ingest (parse -> Bus, and parse -> Bus -> Batcher ->
# SqliteSink, and the same through a whole node) against GoAccess on the same generated 1M-line log, in the same run.
# Needs goaccess on PATH at run time (Debian: apt-get install goaccess); it installs nothing.
add_executable(ingest_bench ${CMAKE_CURRENT_LIST_DIR}/ingest_bench.cpp)
target_include_directories(ingest_bench PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(ingest_bench PRIVATE reqbus::node reqbus::ingest reqbus::analytics reqbus::bus SQLite::SQLite3
  Threads::Threads)
reqbus_apply_defaults(ingest_bench)
