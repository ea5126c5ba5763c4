#!/bin/sh
# Installs dunk into a fresh prefix and builds, outside the tree, a C program
# against libdune with pkg-config (shared and -static) and with
# find_package(dunk), and a C++ program with find_package(dunk); runs each
# in VM mode, and the installed `dunk exec`.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/dunk-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" > "$work/install.log"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig

fail() { echo "install test: $*" >&2; exit 1; }
expect() { # OUTPUT PATTERN WHAT
	case $1 in *"$2"*) ;; *) fail "$3 printed '$1', not '$2'" ;; esac
}

# pkg-config, shared: the program finds libdune.so by its RUNPATH, and
# libdune.so finds libdunk.so beside itself.
cc -Wall -Werror $(pkg-config --cflags libdune) "$src/consumer.c" -o "$work/pc_shared" \
	$(pkg-config --libs libdune) -Wl,-rpath,"$prefix/lib"
out=$("$work/pc_shared") || fail "pkg-config shared program failed: $out"
expect "$out" "libdune consumer: ring 0, a pool page" "pkg-config shared program"

# pkg-config, static (as project-dune built its programs): no libdune.so at run time.
cc -static -Wall -Werror $(pkg-config --cflags libdune) "$src/consumer.c" -o "$work/pc_static" \
	$(pkg-config --static --libs libdune)
if readelf -d "$work/pc_static" | grep -q NEEDED; then fail "the -static program has dynamic dependencies"; fi
out=$("$work/pc_static") || fail "pkg-config static program failed: $out"
expect "$out" "libdune consumer: ring 0, a pool page" "pkg-config static program"

# find_package(dunk): dunk::dunk, dunk::dune, dunk::dune_static.
mkdir "$work/consumer"
cp "$src/consumer.c" "$src/consumer.cc" "$work/consumer/"
cp "$src/CMakeLists.txt.in" "$work/consumer/CMakeLists.txt"
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_BUILD_RPATH="$prefix/lib" > "$work/configure.log" || { cat "$work/configure.log"; fail "configure"; }
cmake --build "$work/consumer/build" > "$work/build.log" || { cat "$work/build.log"; fail "build"; }
out=$("$work/consumer/build/cxx_consumer") || fail "find_package C++ program failed: $out"
expect "$out" "dunk consumer: in VM mode yes" "find_package C++ program"
out=$("$work/consumer/build/c_consumer") || fail "find_package C program failed: $out"
expect "$out" "libdune consumer: ring 0" "find_package C program"
out=$("$work/consumer/build/c_consumer_static") || fail "find_package static C program failed: $out"
expect "$out" "libdune consumer: ring 0" "find_package static C program"

# The installed command line finds its preload library.
out=$("$prefix/bin/dunk" exec -- /bin/echo installed dunk) || fail "installed dunk exec failed: $out"
expect "$out" "installed dunk" "installed dunk exec"
echo "install test: all programs ran in VM mode"
