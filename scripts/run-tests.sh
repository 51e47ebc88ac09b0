#!/bin/sh
# Runs the test suite: every cmocka test program and every shell test given on
# the command line, all of them even after a failure. Prints one line per
# program, the full output of each that failed, and ends with the line
#   N passed, N failed
# (", N skipped" added when some were skipped), exiting 1 if anything failed.
#
# usage: scripts/run-tests.sh PROGRAM|SCRIPT.sh ...   (run by `make check`)
# Environment (set by the Makefile):
#   AGAVE_BUILD   the build directory (logs go to $AGAVE_BUILD/test-logs/)
#   TEST_TIMEOUT  seconds one program may run before it counts as failed (900)
#   VERBOSE       1: print every program's output, not only the failures'
# Counting: a cmocka program counts its test cases (its "[  PASSED  ]" and
# "[  FAILED  ]" totals; if it dies before printing them, the cases it finished
# plus one failure). A shell test counts as one test: exit 0 passes, exit 77
# is a skip (it prints why), anything else fails.
set -eu

build=${AGAVE_BUILD:-build}
timeout_s=${TEST_TIMEOUT:-900}
logs=$build/test-logs
mkdir -p "$logs"

passed=0
failed=0
skipped=0
failed_names=""

# Sum of the counts on cmocka's summary lines "[  $1 ] N test(s)..." in log $2
# (a program may run several groups); empty if there is no such line.
count_of() {
    sed -n "s/^\[  $1 \] \([0-9][0-9]*\) test.*/\1/p" "$2" |
        awk '{ s += $1; n++ } END { if (n) print s }'
}

for t in "$@"; do
    name=$(basename "$t")
    log=$logs/$name.log
    start=$(date +%s)
    rc=0
    # -k: a program that ignores SIGTERM is killed 10 s later. Test programs
    # are paths with a slash (build/tests/test_x), so no PATH lookup happens.
    case $t in
    *.sh) timeout -k 10 "$timeout_s" sh "$t" >"$log" 2>&1 </dev/null || rc=$? ;;
    *) timeout -k 10 "$timeout_s" "$t" >"$log" 2>&1 </dev/null || rc=$? ;;
    esac
    secs=$(($(date +%s) - start))

    case $t in
    *.sh)
        if [ "$rc" -eq 0 ]; then
            p=1 f=0 s=0
        elif [ "$rc" -eq 77 ]; then
            p=0 f=0 s=1
        else
            p=0 f=1 s=0
        fi
        ;;
    *)
        p=$(count_of 'PASSED ' "$log")
        f=$(count_of 'FAILED ' "$log")
        s=$(count_of 'SKIPPED' "$log")
        if [ -z "$p" ]; then
            # No summary: the program died (crash, sanitizer report, timeout)
            # or is not a cmocka program. Count what it finished.
            p=$(grep -c '^\[       OK \]' "$log" || true)
        fi
        f=${f:-0} s=${s:-0}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        if [ "$rc" -eq 0 ] && [ "$p" -eq 0 ] && [ "$s" -eq 0 ]; then p=1; fi
        ;;
    esac
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))

    why=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        why=" (timed out after ${timeout_s} s)"
    elif [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        why=" (exit status $rc)"
    fi
    if [ "$f" -gt 0 ]; then
        printf 'FAIL  %-28s %d passed, %d failed%s, %d s\n' "$name" "$p" "$f" "$why" "$secs"
        failed_names="$failed_names $name"
        sed 's/^/    | /' "$log"
    else
        extra=""
        [ "$s" -gt 0 ] && extra=", $s skipped"
        printf 'ok    %-28s %d passed%s, %d s\n' "$name" "$p" "$extra" "$secs"
        # Shell tests say in a few lines what they checked; show them.
        case $t in *.sh) sed 's/^/    | /' "$log" ;; *)
            if [ "${VERBOSE:-}" = 1 ]; then sed 's/^/    | /' "$log"; fi ;;
        esac
    fi
done

echo
[ -n "$failed_names" ] && echo "failed:$failed_names (logs in $logs/)"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
