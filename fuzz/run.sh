#!/bin/sh
# Runs the fuzz harnesses for a fixed time each and reports what they reached
# (run by `make fuzz`, which builds everything first).
#
# usage: fuzz/run.sh FUZZ_BUILD COV_BUILD SECONDS HARNESS...
#   FUZZ_BUILD/fuzz/HARNESS       libFuzzer binaries (ASan + UBSan)
#   FUZZ_BUILD/fuzz/make_corpus   writes the seeds
#   COV_BUILD/fuzz/replay_HARNESS the same harness, coverage-instrumented
#                                 (used unless FUZZ_COVERAGE=0)
# Per harness HARNESS = fuzz_KIND:
#   seeds     FUZZ_BUILD/fuzz/seeds/KIND   (rewritten every run)
#   corpus    FUZZ_BUILD/fuzz/corpus/KIND  (kept between runs: each run
#             continues where the last one stopped)
#   artifacts FUZZ_BUILD/fuzz/artifacts/   (crash-*, leak-*, timeout-*, oom-*)
#   log       FUZZ_BUILD/fuzz/KIND.log
# Prints one line per harness (executions, speed, libFuzzer's coverage
# counters, corpus size), then the llvm-cov line and branch coverage of the
# reader and loader sources, and ends with "N passed, N failed" (one per
# harness), exiting 1 if any harness found anything.
# To reproduce an artifact: FUZZ_BUILD/fuzz/HARNESS ARTIFACT (add
# FUZZ_DUMP=out.bin to write the bytes the reader saw, for tests/regress/).
set -eu

fuzz_build=$1
cov_build=$2
seconds=$3
shift 3
dir=$fuzz_build/fuzz
rm -rf "$dir/seeds"
"$dir/make_corpus" "$dir/seeds"
mkdir -p "$dir/artifacts"

# libFuzzer options:
#  -max_total_time   the time budget per harness
#  -timeout=10       one input taking over 10 s is a hang (the harnesses do a
#                    few milliseconds of work per input)
#  -rss_limit_mb     2 GiB of memory is an out-of-memory report; a single
#                    malloc above it is reported too (-malloc_limit_mb
#                    defaults to the same): the readers must refuse absurd
#                    sizes before allocating
#  -max_len=16384    room for two CIFAR-10 records and every checkpoint seed
#  -print_final_stats=1  the execution count for the report
# ASan and UBSan stop at the first report (the build has
# -fno-sanitize-recover=all); LeakSanitizer checks each input for leaks.
# FUZZ_BUDGET, when set, is the whole run's time, shared by the harnesses
# (at least 10 s each): CI's time stays the same as harnesses are added.
if [ -n "${FUZZ_BUDGET:-}" ]; then
    seconds=$((FUZZ_BUDGET / $#))
    [ "$seconds" -ge 10 ] || seconds=10
fi
failed=0
passed=0
for h in "$@"; do
    kind=${h#fuzz_}
    # Seeds: what make_corpus wrote for this kind, plus fixed files in
    # fuzz/seeds/KIND/ (a harness may have either, or none).
    mkdir -p "$dir/corpus/$kind" "$dir/seeds/$kind"
    if [ -d "fuzz/seeds/$kind" ]; then
        cp fuzz/seeds/"$kind"/* "$dir/seeds/$kind/" 2>/dev/null || true
    fi
    log=$dir/$kind.log
    rc=0
    "$dir/$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/$kind-" \
        "$dir/corpus/$kind" "$dir/seeds/$kind" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    # The last status line: "#N  DONE  cov: C ft: F corp: K/S ..."
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 edges, \2 features, corpus \3 inputs/p')
    if [ "$rc" -ne 0 ]; then
        failed=$((failed + 1))
        echo "FAIL  $h: exit status $rc after ${execs:-?} executions (log $log):"
        grep -E 'ERROR|SUMMARY|promise broken|Test unit written|runtime error' "$log" |
            head -n 20 | sed 's/^/    | /'
    else
        passed=$((passed + 1))
        echo "ok    $h: ${execs:-?} executions in $seconds s (${speed:-?}/s), ${cov:-no coverage line}"
    fi
done

if [ "${FUZZ_COVERAGE:-1}" != 0 ]; then
    # Replays every corpus input through the coverage build; one profile per
    # harness, merged, then one report over the sources the harnesses target.
    prof=$cov_build/fuzz/profiles
    rm -rf "$prof"
    mkdir -p "$prof"
    objects=""
    for h in "$@"; do
        # llvm-cov takes the first binary as an argument, the others as -object.
        kind=${h#fuzz_}
        LLVM_PROFILE_FILE="$prof/$kind.profraw" "$cov_build/fuzz/replay_$h" \
            "$dir/corpus/$kind" "$dir/seeds/$kind" >/dev/null 2>&1 ||
            echo "note: the coverage replay of $h exited with $? (see the fuzz log)"
        objects="$objects${objects:+ -object} $cov_build/fuzz/replay_$h"
    done
    llvm-profdata merge -sparse "$prof"/*.profraw -o "$prof/all.profdata"
    echo
    echo "coverage of the corpus (llvm-cov; lines and branches of the fuzzed sources):"
    # The sources the harnesses target (a moved file is found by its name).
    sources=""
    for f in data/readers.c data/source.c data/dataset.c checkpoint.c model/config.c \
        data/image_decode.c data/image_png.c data/image_jpeg.c data/image_pnm.c \
        data/image_fit.c data/image_folder.c codec/codec.c codec/format.c codec/bitsback.c \
        codec/rans.c codec/tables.c ${FUZZ_SOURCES:-}; do
        found=$(ls lib/$f lib/*/$f 2>/dev/null | head -n 1)
        sources="$sources${found:+ $found}"
    done
    printf '    %-22s %18s %18s %18s\n' file regions lines branches
    # shellcheck disable=SC2086 # one word per option or file
    llvm-cov report $objects -instr-profile="$prof/all.profdata" $sources |
        awk '/\.c / || /^TOTAL/ { printf "    %-22s %9s %8s %9s %8s %9s %8s\n", $1, $2, $4, $8, $10, $11, $13 }'
    # The same, counting only the functions a memory input can reach: not
    # the checkpoint writer, nor the opening of files and directories by
    # name (tests/test_data.c and tests/test_model.c cover those).
    unreachable='agave_model_save|serialise|put|put_u32|put_u64|put_config|put_f32|put_i32|put_floats|write_atomically|agave_model_load|read_file|src_open_file|errno_text|agave_dataset_open_files|check_same_geometry|agave_dataset_open|open_directory|scan_directory|scan_entry|strip_gz|ends_with|cifar_batch_number|list_push|idx_split_of|choose_files|sort_and_dedupe|found_cmp|split_name|open_found|list_free|extension_of|classify_name|join|walk|visit|rel_cmp|keep_split|read_whole|make_names|load_images|is_dir|check_listing|image_folder_open|dataset_fit|dataset_options_read|check_options|side_ok|options_defaults|agave_dataset_options_init_sized|agave_dataset_open_v2|image_folder_is_test'
    echo "    the functions a memory input can reach:"
    # shellcheck disable=SC2086
    llvm-cov report $objects -instr-profile="$prof/all.profdata" -show-functions $sources |
        awk -v skip="^($unreachable)\$" '
            /^File / { f = $2; gsub(/.*\/|[\x27:]/, "", f) }
            $1 != "Name" && $1 != "TOTAL" && NF == 10 && $2 ~ /^[0-9]+$/ {
                n = $1; sub(/.*:/, "", n)
                if (n ~ skip) next
                l[f] += $5; lm[f] += $6; b[f] += $8; bm[f] += $9 }
            END { for (f in l) printf "    %-22s lines %5d/%-5d %6.2f%%  branches %4d/%-4d %6.2f%%\n",
                      f, l[f] - lm[f], l[f], 100 * (l[f] - lm[f]) / l[f],
                      b[f] - bm[f], b[f], b[f] ? 100 * (b[f] - bm[f]) / b[f] : 0 }' | sort
    # The functions no input entered: by design the file and directory
    # paths (tests/test_data.c covers them) and the checkpoint writer.
    echo "    functions never entered (not reachable from a memory input, or not reached):"
    # shellcheck disable=SC2086
    llvm-cov report $objects -instr-profile="$prof/all.profdata" -show-functions $sources |
        awk '/^File / { f = $2; gsub(/.*\/|[\x27:]/, "", f) }
             $3 != "" && $2 == $3 && $2 + 0 > 0 && $1 != "TOTAL" && $1 != "Name" {
                 n = $1; sub(/.*:/, "", n); miss[f] = miss[f] " " n }
             END { for (f in miss) printf "      %s:%s\n", f, miss[f] }' | sort
fi
# One test per harness, in the format of make check's last line.
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
