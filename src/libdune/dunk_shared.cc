// libdunk.so is dunk_static linked whole (src/libdune/CMakeLists.txt); CMake
// wants a source of its own for the target, and this is it.
