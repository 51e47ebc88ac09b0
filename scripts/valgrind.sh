#!/bin/sh
# Runs a subset of the test suite under valgrind memcheck (run by
# `make valgrind`, which builds it first). Zero errors and zero definitely
# lost bytes are required: any memcheck error or definite leak makes the
# program exit 99, which fails it. The output ends like make check's with
# "N passed, N failed" (scripts/run-tests.sh does the running and counting).
#
# usage: scripts/valgrind.sh BUILD
#   BUILD   the (ordinary, unsanitized) build whose tests and programs to run
# Environment: VALGRIND_TESTS replaces the list of test programs below;
# TEST_TIMEOUT, VERBOSE as for make check.
#
# The subset (about 4 minutes on 2 cores; the whole suite would take over
# half an hour, memcheck running the numerical tests 30-60 times slower):
#   test_data test_regress test_limits test_threads test_ops test_layers
#   test_gradcheck test_conv test_optim test_geometry test_iaf, and
#   scripts/valgrind-programs.sh (agave-train,
#   agave-eval, agave-sample on a tiny data set, which covers the model's
#   training step, evaluation, sampling and checkpoints end to end).
# Left out: test_loss (7 minutes under memcheck), test_model (over 15),
# test_sample_cached (11; agave-sample runs the cached sampler), and
# the shell tests of make check (exports, consumer build, program options),
# which add no library code that the subset does not run.
# Under valgrind, test_limits skips its address-space-limit case (valgrind's
# own memory shares the limited address space) and test_threads its
# two-threads-per-context case (AGAVE_UNDER_VALGRIND=1).
set -eu

build=$1
tests=${VALGRIND_TESTS:-"test_data test_regress test_limits test_threads test_ops test_layers test_gradcheck test_conv test_optim test_geometry test_iaf"}
dir=$build/valgrind
rm -rf "$dir"
mkdir -p "$dir/bin"

# memcheck options:
#  --error-exitcode=99            any error fails the program
#  --leak-check=full              each leak with the stack that allocated it
#  --errors-for-leak-kinds=definite  only definitely lost blocks count (and
#                                 make the exit status 99): "possibly lost"
#                                 and "still reachable" blocks are the thread
#                                 stacks and pools of libgomp and OpenBLAS,
#                                 alive until exit by design
#  --show-leak-kinds=definite     report only those
#  --num-callers=40               deep enough to reach the test's own frame
# No suppression file: with these options the subset reports nothing from
# libgomp, OpenBLAS, zlib or glibc (checked with valgrind 3.19, Debian 12).
# If third-party noise appears, add a suppression naming only that library's
# frames (--gen-suppressions=all prints them) and say why, never a blanket one.
VALGRIND_OPTS="-q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
--show-leak-kinds=definite --num-callers=40"
export VALGRIND_OPTS
# libgomp's idle threads spin while waiting for work; under valgrind, which
# runs one thread at a time, a spinning thread wastes its whole time slice.
# Passive waiting changes no result.
export OMP_WAIT_POLICY=passive
export AGAVE_UNDER_VALGRIND=1

# One wrapper per test program, named like it, so that run-tests.sh counts
# its cmocka summary as usual.
top=$(pwd)
progs=""
for t in $tests; do
    [ -x "$build/tests/$t" ] || { echo "valgrind.sh: $build/tests/$t is not built" >&2; exit 2; }
    printf '#!/bin/sh\nexec valgrind %s/%s/tests/%s "$@"\n' "$top" "$build" "$t" >"$dir/bin/$t"
    chmod +x "$dir/bin/$t"
    progs="$progs $dir/bin/$t"
done

echo "valgrind memcheck ($(valgrind --version)) over:$progs scripts/valgrind-programs.sh"
# shellcheck disable=SC2086 # one word per program
AGAVE_BUILD=$dir sh scripts/run-tests.sh $progs scripts/valgrind-programs.sh
