# Per-target settings for reqbus's own targets. Nothing here is forced on consumers:
# warnings and sanitizers are PRIVATE to the target they are applied to.
function(reqbus_apply_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(REQBUS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
    # GCC 12 at -O3 (Release) reports -Wrestrict inside libstdc++'s own std::string operator+
    # (a known false positive, GCC PR 105329); keep it a warning rather than an error there.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE -Wno-error=restrict)
    endif()
  endif()
  if(REQBUS_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${REQBUS_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${REQBUS_SANITIZE})
  endif()
  # msgpack-c without Boost: we use only its core packer/unpacker.
  target_compile_definitions(${target} PRIVATE MSGPACK_NO_BOOST)
endfunction()
