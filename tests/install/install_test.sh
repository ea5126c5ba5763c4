#!/bin/sh
# Installs dunk into a fresh prefix and builds, outside the tree, a C program
# against libdune with pkg-config (shared and -static) and with
# find_package(dunk), a C++ program with find_package(dunk) and a Wedge
# program against libsthread with pkg-config; runs each
# in VM mode, and the installed `dunk exec`.
#
# Usage: install_test.sh build|run BUILD_DIR SOURCE_DIR WORK_DIR
#   build  installs and builds the programs into WORK_DIR (no KVM needed: the
#          unit tier, on the host, where compiling is fast)
#   run    runs them in VM mode (the kvm tier, maybe in the nested test VM,
#          where compiling is slow); builds them first when WORK_DIR holds
#          no build newer than dunk's libraries and command line
set -eu
step=$1
build=$(cd "$2" && pwd)
src=$(cd "$3" && pwd)
mkdir -p "$4"
work=$(cd "$4" && pwd)
prefix=$work/prefix
stamp=$work/built

fail() { echo "install test: $*" >&2; exit 1; }
expect() { # OUTPUT PATTERN WHAT
	case $1 in *"$2"*) ;; *) fail "$3 printed '$1', not '$2'" ;; esac
}

build_all() {
	rm -rf "$work"
	mkdir -p "$work"
	cmake --install "$build" --prefix "$prefix" > "$work/install.log"
	export PKG_CONFIG_PATH=$prefix/lib/pkgconfig

	# pkg-config, shared: the program finds libdune.so by its RUNPATH, and
	# libdune.so finds libdunk.so beside itself.
	cc -Wall -Werror $(pkg-config --cflags libdune) "$src/consumer.c" -o "$work/pc_shared" \
		$(pkg-config --libs libdune) -Wl,-rpath,"$prefix/lib"
	# pkg-config, static (as project-dune built its programs): no libdune.so at run time.
	cc -static -Wall -Werror $(pkg-config --cflags libdune) "$src/consumer.c" -o "$work/pc_static" \
		$(pkg-config --static --libs libdune)
	if readelf -d "$work/pc_static" | grep -q NEEDED; then fail "the -static program has dynamic dependencies"; fi
	# pkg-config sthread: a Wedge program (#include "sthread.h"), as Wedge's are built.
	cc -Wall -Werror $(pkg-config --cflags sthread) "$src/../sthread/sthread_c_test.c" -o "$work/pc_sthread" \
		$(pkg-config --libs sthread) -Wl,-rpath,"$prefix/lib"

	# find_package(dunk): dunk::dunk, dunk::dune, dunk::dune_static.
	mkdir "$work/consumer"
	cp "$src/consumer.c" "$src/consumer.cc" "$work/consumer/"
	cp "$src/CMakeLists.txt.in" "$work/consumer/CMakeLists.txt"
	cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" \
		-DCMAKE_BUILD_RPATH="$prefix/lib" > "$work/configure.log" || { cat "$work/configure.log"; fail "configure"; }
	cmake --build "$work/consumer/build" > "$work/build.log" || { cat "$work/build.log"; fail "build"; }
	touch "$stamp"
}

# Whether the programs in WORK_DIR were built from what BUILD_DIR holds now.
current() {
	[ -f "$stamp" ] || return 1
	for f in "$build/dunk" "$build/libdunk-preload.so" "$build"/src/libdune/libdune.so "$build"/src/libdune/libdune.a \
		"$build"/src/libdune/libdunk.so "$build"/src/libdunk_static.a "$build"/src/sthread/libsthread.so; do
		[ -e "$f" ] && [ ! "$f" -nt "$stamp" ] || return 1
	done
	return 0
}

run_all() {
	out=$("$work/pc_shared") || fail "pkg-config shared program failed: $out"
	expect "$out" "libdune consumer: ring 0, a pool page" "pkg-config shared program"
	out=$("$work/pc_static") || fail "pkg-config static program failed: $out"
	expect "$out" "libdune consumer: ring 0, a pool page" "pkg-config static program"
	out=$("$work/pc_sthread") || fail "pkg-config sthread program failed: $out"
	expect "$out" "sthread C API: all checks passed" "pkg-config sthread program"
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
}

case $step in
build)
	build_all
	echo "install test: installed into $prefix, programs built"
	;;
run)
	if ! current; then
		echo "install test: no current build in $work (the unit tier's install.build makes one): building here"
		build_all
	fi
	run_all
	;;
*) fail "unknown step $step" ;;
esac
