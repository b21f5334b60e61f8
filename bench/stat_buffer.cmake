# StatBuffer increments/s (1 and 2 threads) against a std::unordered_map under one std::mutex.
add_executable(stat_buffer_bench ${CMAKE_CURRENT_LIST_DIR}/stat_buffer_bench.cpp)
target_include_directories(stat_buffer_bench PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(stat_buffer_bench PRIVATE reqbus::analytics Threads::Threads)
reqbus_apply_defaults(stat_buffer_bench)
