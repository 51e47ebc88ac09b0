#!/bin/sh
# The CMake package: `make install` into a temporary prefix, then a small
# project outside the tree, found with find_package(agave <version>) through
# CMAKE_PREFIX_PATH and built with Debian's cmake, twice: against agave::agave
# (the program must need libagave.so.MAJOR and load the prefix's) and against
# agave::agave_static (it must not need libagave.so; the installed .so files
# are removed before it runs). Both run tests/consumer/consumer.c, which checks
# the library's answers. A request for the next major version must fail.
#
# usage: tests/cmake_package.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD, AGAVE_SAN (sanitizer flags for the consumer),
# AGAVE_CC, MAKE.
set -eu
. tests/support/preamble.sh
prefix=$tmp/prefix
command -v cmake >/dev/null 2>&1 || skip "cmake is missing (apt-get install cmake)"

quiet "$make" --no-print-directory install BUILD="$build" PREFIX="$prefix" DESTDIR=
for f in agaveConfig.cmake agaveConfigVersion.cmake; do
    [ -f "$prefix/lib/cmake/agave/$f" ] || fail "make install did not install lib/cmake/agave/$f"
done

mkdir "$tmp/src"
cp tests/consumer/consumer.c "$tmp/src/"
cat >"$tmp/src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.13)
project(agave_consumer C)
find_package(agave $major.0 REQUIRED)
add_executable(consumer_shared consumer.c)
target_link_libraries(consumer_shared PRIVATE agave::agave m)
add_executable(consumer_static consumer.c)
target_link_libraries(consumer_static PRIVATE agave::agave_static m)
CMAKE

quiet cmake -S "$tmp/src" -B "$tmp/out" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="-std=c11 -Wall -Wextra -Werror $san" -DCMAKE_EXE_LINKER_FLAGS="$san"
quiet cmake --build "$tmp/out"
echo "cmake_package: find_package(agave $major.0) found $version; both consumers built"

run() { # program
    if ! "$tmp/out/$1" >"$tmp/$1.out" 2>&1; then
        cat "$tmp/$1.out" >&2
        fail "$1 did not run cleanly"
    fi
    grep -q '^consumer: all checks passed$' "$tmp/$1.out" || fail "$1 did not pass its checks"
}
readelf -d "$tmp/out/consumer_shared" | grep -q "NEEDED.*\[libagave\.so\.$major\]" ||
    fail "consumer_shared does not need libagave.so.$major"
found=$(ldd "$tmp/out/consumer_shared" | sed -n 's/.*libagave\.so[^ ]* => \([^ ]*\).*/\1/p')
[ "$(readlink -f "$found")" = "$(readlink -f "$prefix/lib/libagave.so.$major")" ] ||
    fail "consumer_shared loads libagave from '$found', not from the prefix"
run consumer_shared
if readelf -d "$tmp/out/consumer_static" | grep -q 'NEEDED.*libagave'; then
    fail "consumer_static needs libagave.so"
fi
rm -f "$prefix/lib/libagave.so"*
run consumer_static
echo "cmake_package: agave::agave and agave::agave_static consumers run and pass their checks"

# The version file refuses a newer minor, a newer major and (from 1.0 on) an
# older major than the installed one.
refused() { # requested-version
    sed "s/find_package(agave [0-9.]* REQUIRED)/find_package(agave $1 REQUIRED)/" \
        "$tmp/src/CMakeLists.txt" >"$tmp/CMakeLists.new"
    mv "$tmp/CMakeLists.new" "$tmp/src/CMakeLists.txt"
    rm -rf "$tmp/out2"
    if cmake -S "$tmp/src" -B "$tmp/out2" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/log" 2>&1; then
        fail "find_package(agave $1) accepted version $version"
    fi
    grep -q "$version" "$tmp/log" || fail "cmake's refusal of $1 does not name version $version"
}
minor=$(echo "$version" | cut -d. -f2)
refused "$major.$((minor + 1))"
refused "$((major + 1)).0"
[ "$major" -ge 1 ] && refused "$((major - 1)).0"
echo "cmake_package: find_package refuses a newer minor and another major (installed: $version)"
echo "cmake_package: all checks passed"
