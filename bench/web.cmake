# web_bench: the example web site under wrk with and without reqbus publishing (RequestLogger),
# alternating runs. Needs wrk on PATH at run time (Debian: apt-get install wrk).
add_executable(web_bench ${CMAKE_CURRENT_LIST_DIR}/web_bench.cpp)
target_include_directories(web_bench PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(web_bench PRIVATE REQBUS_WEB_BENCH_LUA="${CMAKE_CURRENT_LIST_DIR}/web_bench.lua")
target_link_libraries(web_bench PRIVATE reqbus::bus reqbus::analytics PkgConfig::HTTPLIB Threads::Threads)
reqbus_apply_defaults(web_bench)
