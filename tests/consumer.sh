#!/bin/sh
# The out-of-tree consumer test: installs libagave into a temporary prefix,
# builds tests/consumer/consumer.c outside the source tree the way a user would
# (`pkg-config --cflags --libs agave`, PKG_CONFIG_PATH at the temporary prefix),
# shared and static, runs both and checks their output. Then checks that
# DESTDIR staging and `make uninstall` work.
#
# Static: a fully static executable (`cc -static ... $(pkg-config --static
# --libs agave)`), which needs no shared library at all. Under the sanitizers
# (AGAVE_SAN set) a fully static link is impossible (ASan has no static
# runtime), so libagave.a is linked statically and the system libraries
# dynamically; in both cases the binary must not need libagave.so.
#
# usage: tests/consumer.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory), AGAVE_SAN (sanitizer flags to
# compile and link the consumer with), AGAVE_CC (compiler), MAKE.
set -eu
. tests/support/preamble.sh
prefix=$tmp/prefix

# 1. Install into the temporary prefix (the same build: BUILD and the flags
#    come through the environment and MAKEFLAGS).
quiet "$make" --no-print-directory install BUILD="$build" PREFIX="$prefix" DESTDIR=
for f in include/agave.h include/agave_version.h lib/libagave.a "lib/libagave.so.$version" \
    "lib/libagave.so.$major" lib/libagave.so lib/pkgconfig/agave.pc \
    lib/cmake/agave/agaveConfig.cmake lib/cmake/agave/agaveConfigVersion.cmake \
    share/man/man1/agave-train.1 share/man/man1/agave-eval.1 share/man/man1/agave-sample.1 \
    share/man/man3/libagave.3 share/doc/libagave/LICENSE share/doc/libagave/README.md \
    share/doc/libagave/CHANGELOG.md share/doc/libagave/docs/data.md; do
    [ -e "$prefix/$f" ] || fail "make install did not install $f"
done
extra=$(find "$prefix/include" -mindepth 1 ! -name agave.h ! -name agave_version.h)
[ -z "$extra" ] || fail "internal headers installed: $extra"
echo "consumer: installed $version into a temporary prefix"

# 2. pkg-config finds it there.
PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
pcv=$(pkg-config --modversion agave) || fail "pkg-config does not find agave.pc"
[ "$pcv" = "$version" ] || fail "pkg-config --modversion agave says $pcv, the header $version"
[ "$(pkg-config --variable=prefix agave)" = "$prefix" ] || fail "agave.pc has the wrong prefix"
cflags=$(pkg-config --cflags agave)
libs=$(pkg-config --libs agave)
static_libs=$(pkg-config --static --libs agave)
echo "consumer: pkg-config --cflags --libs agave: $cflags $libs"
echo "consumer: pkg-config --static --libs agave: $static_libs"

# 3. Build out of tree: only consumer.c, in a directory of its own.
mkdir "$tmp/src"
cp tests/consumer/consumer.c "$tmp/src/"
cd "$tmp/src"
cflags="-std=c11 -Wall -Wextra -Werror -O2 $san $cflags"

run_and_check() { # name, then the environment and command to run
    name=$1
    shift
    if ! env "$@" >"$tmp/$name.out" 2>&1; then
        cat "$tmp/$name.out" >&2
        fail "$name did not run cleanly"
    fi
    grep -q '^consumer: all checks passed$' "$tmp/$name.out" || {
        cat "$tmp/$name.out" >&2
        fail "$name did not pass its checks"
    }
    grep -qx "libagave $version (compiled against $version)" "$tmp/$name.out" ||
        fail "$name reports another library version"
}

# 3a. Shared: needs libagave.so.MAJOR, found in the prefix.
# shellcheck disable=SC2086 # word splitting of flags is intended
quiet "$cc" $cflags consumer.c $libs -lm -o consumer-shared
readelf -d consumer-shared | grep -q "NEEDED.*\[libagave\.so\.$major\]" ||
    fail "consumer-shared does not need libagave.so.$major"
found=$(LD_LIBRARY_PATH=$prefix/lib ldd ./consumer-shared | sed -n 's/.*libagave\.so[^ ]* => \([^ ]*\).*/\1/p')
[ "$found" = "$prefix/lib/libagave.so.$major" ] ||
    fail "consumer-shared loads libagave from '$found', not from the prefix"
run_and_check consumer-shared LD_LIBRARY_PATH="$prefix/lib" ./consumer-shared
echo "consumer: shared link runs and passes ($(grep -c '^ok' "$tmp/consumer-shared.out") checks)"

# 3b. The installed programs use the installed shared library: they need
#     libagave.so.MAJOR and find the prefix's copy through their run path
#     ($ORIGIN/../lib), with no LD_LIBRARY_PATH.
lib_real=$(readlink -f "$prefix/lib/libagave.so.$major")
for p in agave-train agave-eval agave-sample; do
    exe=$prefix/bin/$p
    readelf -d "$exe" | grep -q "NEEDED.*\[libagave\.so\.$major\]" ||
        fail "the installed $p does not need libagave.so.$major (linked statically?)"
    found=$(ldd "$exe" | sed -n 's/.*libagave\.so[^ ]* => \([^ ]*\).*/\1/p')
    [ -n "$found" ] && [ "$(readlink -f "$found")" = "$lib_real" ] ||
        fail "the installed $p loads libagave from '$found', not from the prefix"
    [ "$("$exe" --version)" = "$p (libagave) $version" ] || fail "the installed $p does not run"
done
echo "consumer: the installed programs run with the installed libagave.so.$major"

# 3c. Static.
if [ -z "$san" ]; then
    # shellcheck disable=SC2086
    quiet "$cc" -static $cflags consumer.c $static_libs -lm -o consumer-static
    if readelf -d consumer-static 2>&1 | grep -q NEEDED; then
        fail "consumer-static is not fully static: $(readelf -d consumer-static | grep NEEDED)"
    fi
    kind="fully static executable"
else
    # -l:libagave.a takes the archive even though libagave.so sits beside it.
    libs_a=$(echo "$static_libs" | sed 's/\(^\| \)-lagave\( \|$\)/\1-l:libagave.a\2/')
    # shellcheck disable=SC2086
    quiet "$cc" $cflags consumer.c $libs_a -lm -o consumer-static
    if readelf -d consumer-static | grep -q 'NEEDED.*libagave'; then
        fail "consumer-static needs libagave.so"
    fi
    kind="libagave linked statically, system libraries shared (sanitizer build)"
fi
# No libagave.so may be found: remove the installed ones first.
rm -f "$prefix/lib/libagave.so"*
run_and_check consumer-static ./consumer-static
echo "consumer: static link runs and passes: $kind"
cd "$src"

# 4. DESTDIR stages the same tree under another root; uninstall removes it all.
stage=$tmp/stage
quiet "$make" --no-print-directory install BUILD="$build" PREFIX=/opt/agave DESTDIR="$stage"
[ -f "$stage/opt/agave/lib/pkgconfig/agave.pc" ] || fail "DESTDIR install put agave.pc elsewhere"
grep -qx 'prefix=/opt/agave' "$stage/opt/agave/lib/pkgconfig/agave.pc" ||
    fail "DESTDIR leaked into agave.pc"
quiet "$make" --no-print-directory uninstall BUILD="$build" PREFIX=/opt/agave DESTDIR="$stage"
left=$(find "$stage" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "consumer: DESTDIR install and uninstall leave nothing behind"
