# dunk's layers (docs/ARCHITECTURE.md, "Layers"), enforced by the build.
#
# Each layer is an object library compiled against an include root of its
# own, build/layers/<layer>/, which holds links to exactly what the layer may
# use: its own directory, the layers below it, and the public headers it may
# include. An upward #include — core including "priv/internal.h", the ring-0
# runtime including "dunk/traps.h" — finds no such file and fails to compile.
#
#   dunk_layer(<name>
#     SOURCES <files>...       relative to src/<dir>
#     DIR <dir>                the layer's directory under src/ (default: <name>)
#     SEES <dirs>...           other layers' directories under src/ it may include
#     API <headers>...         public headers (include/dunk/<header>) it may include
#     HEADERS <dirs>...        other directories of include/ it may include (a C
#                              API's headers: libdune, kern)
#     OWN_LIBRARY)             its objects go into a library of their own, not
#                              into dunk_static (libdune)
#
# Every layer may include the vocabulary headers dunk/result.h and
# dunk/address.h. dunk_static bundles every layer's objects; what links it
# (the shared libraries, tools, tests, benchmarks) sees all headers.
set(DUNK_VOCABULARY_HEADERS result.h address.h)
set(DUNK_LAYERS "" CACHE INTERNAL "")

function(dunk_layer name)
  cmake_parse_arguments(L "OWN_LIBRARY" "DIR" "SOURCES;SEES;API;HEADERS" ${ARGN})
  if(NOT L_DIR)
    set(L_DIR ${name})
  endif()
  set(root ${PROJECT_BINARY_DIR}/layers/${name})
  file(REMOVE_RECURSE ${root})
  file(MAKE_DIRECTORY ${root}/dunk)
  foreach(dir IN LISTS L_DIR L_SEES)
    # "arch/x86_64" is included through its top directory "arch".
    string(REGEX REPLACE "/.*" "" top ${dir})
    if(NOT EXISTS ${root}/${top})
      file(CREATE_LINK ${PROJECT_SOURCE_DIR}/src/${top} ${root}/${top} SYMBOLIC)
    endif()
  endforeach()
  foreach(header IN LISTS DUNK_VOCABULARY_HEADERS L_API)
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/include/dunk/${header} ${root}/dunk/${header} SYMBOLIC)
  endforeach()
  foreach(dir IN LISTS L_HEADERS)
    if(dir STREQUAL L_DIR)
      # The layer's directory and its public headers' share a name
      # (src/libdune, include/libdune): one directory with links to both's
      # files, which may not share a name.
      file(REMOVE ${root}/${dir})
      file(MAKE_DIRECTORY ${root}/${dir})
      file(GLOB files CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${dir}/* ${PROJECT_SOURCE_DIR}/include/${dir}/*)
      foreach(file IN LISTS files)
        get_filename_component(file_name ${file} NAME)
        if(EXISTS ${root}/${dir}/${file_name})
          message(FATAL_ERROR "layer ${name}: src/${dir} and include/${dir} both hold ${file_name}")
        endif()
        file(CREATE_LINK ${file} ${root}/${dir}/${file_name} SYMBOLIC)
      endforeach()
    else()
      file(CREATE_LINK ${PROJECT_SOURCE_DIR}/include/${dir} ${root}/${dir} SYMBOLIC)
    endif()
  endforeach()
  list(TRANSFORM L_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/src/${L_DIR}/)
  add_library(dunk_${name} OBJECT ${L_SOURCES})
  target_include_directories(dunk_${name} PRIVATE ${root})
  target_link_libraries(dunk_${name} PRIVATE dunk_flags)
  set_target_properties(dunk_${name} PROPERTIES DUNK_SEES "${L_SEES}" DUNK_API "${L_API}")
  if(NOT L_OWN_LIBRARY)
    set(DUNK_LAYERS ${DUNK_LAYERS} dunk_${name} CACHE INTERNAL "")
  endif()
endfunction()
