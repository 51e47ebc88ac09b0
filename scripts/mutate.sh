#!/bin/sh
# Mutation testing: applies each single-line mutant of scripts/mutants.txt to
# a clean copy of the committed tree (git HEAD), builds it, runs the tests of
# `make check` until one fails, and reports the mutant caught (by that test)
# or survived. Not part of make check: a full campaign takes hours on two
# cores. docs/reliability.md reports the score.
#
# usage: scripts/mutate.sh [--check] [--list] [NAME...]
#   NAME...   only these mutants (default: all)
#   --list    the mutants' names and what each breaks
#   --check   only says whether every mutant still applies to the tree (fast:
#             run it after code has moved, then fix the listed ones)
# Environment:
#   MUTATE_DIR      work directory (default build-mutate): src/ is the copy,
#                   report.txt the results, logs/NAME.log each mutant's output
#   MUTATE_JOBS     make -j (default 2)
#   MUTATE_TIMEOUT  seconds per test program (default 300; a mutant that makes
#                   a test hang counts as caught by that test's timeout)
# The copy is built and its whole suite run once first (the baseline must
# pass); the tests then run fastest first, as timed by the baseline, so that
# most mutants are caught in seconds; a test program is linked only when its
# turn comes. After each mutant the file is restored from the clean copy and
# the next build recompiles only that file.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
mutants=$top/scripts/mutants.txt
apply="python3 $top/scripts/mutate.py"
dir=${MUTATE_DIR:-build-mutate}
case $dir in /*) ;; *) dir=$top/$dir ;; esac
jobs=${MUTATE_JOBS:-2}
# -Wno-error: a mutant that only draws a warning (a variable left unused) is
# judged by the tests, not refused by -Werror; baseline and mutants alike.
# Through the environment (the Makefile's CFLAGS ?=), so that the shell tests'
# own make calls (consumer.sh's install) see the same flags and rebuild nothing.
CFLAGS="${CFLAGS:-} -Wno-error"
export CFLAGS
mk="make -j$jobs"
timeout_s=${MUTATE_TIMEOUT:-300}

command -v python3 >/dev/null || sh "$top/scripts/deps.sh" mutate
case ${1:-} in
--list)
    for n in $($apply list "$mutants"); do
        printf '%-34s %s\n' "$n" "$($apply get "$mutants" "$n" title)"
    done
    exit 0
    ;;
--check)
    exec $apply check "$mutants" "$top"
    ;;
-*)
    echo "usage: scripts/mutate.sh [--check] [--list] [NAME...]" >&2
    exit 2
    ;;
esac

sh "$top/scripts/deps.sh" mutate

names=${*:-$($apply list "$mutants")}
src=$dir/src
clean=$dir/clean
logs=$dir/logs
rm -rf "$src" "$clean" "$logs"
mkdir -p "$src" "$clean" "$logs"
# The committed tree, twice: one copy to mutate, one to restore from.
(cd "$top" && git archive HEAD) | tar -x -C "$src"
(cd "$top" && git archive HEAD) | tar -x -C "$clean"
$apply check "$mutants" "$src" >"$logs/check.txt" || true
commit=$(cd "$top" && git rev-parse --short HEAD)

# The library alone; each test program is linked just before it runs (most
# mutants are caught by the first few), the programs before the first shell test.
build() {
    (cd "$src" && $mk lib) >"$logs/last-build.txt" 2>&1
}

# Links what test $1 needs, then runs it as make check does; exit status 0
# if it passed, 1 if it failed, 2 if it could not be built.
run_test() { # test
    case $1 in
    *.sh) need=programs ;;
    *) need=$1 ;;
    esac
    (cd "$src" && $mk "$need") >"$logs/last-test.txt" 2>&1 || return 2
    (cd "$src" && AGAVE_BUILD=build AGAVE_SAN= AGAVE_CC=cc MAKE=make TEST_TIMEOUT=$timeout_s \
        sh scripts/run-tests.sh "$1") >"$logs/last-test.txt" 2>&1 || return 1
}

# ---- baseline ---------------------------------------------------------------------
echo "mutate: building the clean copy of $commit in $src"
build || { echo "mutate: the clean copy does not build (see $logs/last-build.txt)" >&2; exit 1; }
tests=$(cd "$src" && make -s print-tests)
: >"$logs/times.txt"
for t in $tests; do
    start=$(date +%s)
    run_test "$t" || { echo "mutate: baseline: $t fails or does not build on the clean copy (see $logs/last-test.txt)" >&2; exit 1; }
    echo "$(($(date +%s) - start)) $t" >>"$logs/times.txt"
done
order=$(sort -n "$logs/times.txt" | awk '{ print $2 }')
echo "mutate: baseline passes ($(wc -l <"$logs/times.txt") programs, $(awk '{ s += $1 } END { print s }' "$logs/times.txt") s)"

# ---- mutants ----------------------------------------------------------------------
report=$dir/report.txt
{
    echo "mutation campaign on $commit, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
    echo "mutants: scripts/mutants.txt; tests: make check's, fastest first, first failure counts"
} >"$report"
caught=0 survived=0 invalid=0
for n in $names; do
    log=$logs/$n.log
    start=$(date +%s)
    if ! where=$(cd "$src" && $apply apply "$mutants" "$src" "$n" 2>&1); then
        result="invalid (does not apply: $where)"
        invalid=$((invalid + 1))
    else
        file=${where%%:*}
        echo "$where" >"$log"
        if ! build; then
            cat "$logs/last-build.txt" >>"$log"
            result="invalid (does not build)"
            invalid=$((invalid + 1))
        else
            result=""
            for t in $order; do
                rc=0
                run_test "$t" || rc=$?
                [ "$rc" -eq 0 ] && continue
                cat "$logs/last-test.txt" >>"$log"
                result="caught by $(basename "$t")"
                [ "$rc" -eq 2 ] && result="invalid ($(basename "$t") does not build)"
                break
            done
            suite=$($apply get "$mutants" "$n" suite)
            if [ -z "$result" ] && [ -n "$suite" ]; then
                if ! (cd "$src" && $mk "$suite") >>"$log" 2>&1; then
                    result="caught by make $suite"
                fi
            fi
            case $result in
            invalid*) invalid=$((invalid + 1)) ;;
            ?*) caught=$((caught + 1)) ;;
            *)
                result="SURVIVED"
                survived=$((survived + 1))
                ;;
            esac
        fi
        cp "$clean/$file" "$src/$file"
    fi
    line=$(printf '%-34s %-40s %4d s  %s' "$n" "$result" "$(($(date +%s) - start))" "$where")
    echo "$line" | tee -a "$report"
done
valid=$((caught + survived))
score=$(awk -v c="$caught" -v v="$valid" 'BEGIN { printf "%.1f", v ? 100 * c / v : 0 }')
summary="mutation score: $caught caught of $valid ($score%), $survived survived, $invalid invalid"
echo "$summary" | tee -a "$report"
echo "mutate: report in $report, logs in $logs/"
[ "$survived" -eq 0 ] && [ "$invalid" -eq 0 ]
