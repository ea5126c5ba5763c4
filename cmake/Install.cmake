# `cmake --install`: dunk as a library other projects use.
#
#   bin/dunk -> ../libexec/dunk/dunk      the command line; `dunk exec` finds
#   libexec/dunk/libdunk-preload.so       its preload library next to itself
#   libexec/dunk/dunk-sandbox-loop        and `dunk bench --only sandbox` its
#                                         program for dunk sandbox
#   lib/libdunk.so, lib/libdunk.a         dunk (C++: include/dunk/)
#   lib/libdune.so, lib/libdune.a         Dune's libdune on dunk (C)
#   lib/libsthread.so                     Wedge's sthreads on dunk (C and C++;
#                                         shared only: see src/sthread)
#   include/dunk/*.h
#   include/sthread/sthread.h             -I include/sthread gives "sthread.h",
#                                         as Wedge's programs include it
#   include/dune/libdune/*.h, include/dune/kern/dune.h
#                                         Dune's paths: -I include/dune gives
#                                         "libdune/dune.h", whose "../kern/dune.h"
#                                         resolves beside it
#   lib/pkgconfig/dunk.pc, libdune.pc, sthread.pc
#   lib/cmake/dunk/                       find_package(dunk): dunk::dunk,
#                                         dunk::dune (and their _static forms)
#
# The static libraries need the C++ runtime at link time (pkg-config
# --static, or the _static CMake targets, say so).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS dunk dunk_preload dunk_sandbox_loop
        RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/dunk
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/dunk)
install(CODE "
  file(MAKE_DIRECTORY \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  file(CREATE_LINK \"../${CMAKE_INSTALL_LIBEXECDIR}/dunk/dunk\"
       \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/dunk\" SYMBOLIC)")

install(TARGETS dunk_shared dune_shared dune_static sthread_shared
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# dunk_static's file is libdunk_static.a in the build tree.
install(FILES $<TARGET_FILE:dunk_static> DESTINATION ${CMAKE_INSTALL_LIBDIR} RENAME libdunk.a)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/dunk DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sthread DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/libdune ${PROJECT_SOURCE_DIR}/include/kern
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dune)

set(DUNK_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# Relocatable: the prefix is found from the .pc file's own place, so that
# `cmake --install --prefix` anywhere works.
file(RELATIVE_PATH DUNK_PC_TO_PREFIX /prefix/${DUNK_PKGCONFIG_DIR} /prefix)
string(REGEX REPLACE "/$" "" DUNK_PC_TO_PREFIX "${DUNK_PC_TO_PREFIX}")
foreach(pc dunk libdune sthread)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${DUNK_PKGCONFIG_DIR})
endforeach()

set(DUNK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dunk)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dunkConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dunkConfig.cmake
                              INSTALL_DESTINATION ${DUNK_CMAKE_DIR}
                              PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dunkConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dunkConfig.cmake ${PROJECT_BINARY_DIR}/dunkConfigVersion.cmake
        DESTINATION ${DUNK_CMAKE_DIR})
