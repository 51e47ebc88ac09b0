#!/bin/sh
# agave-train under mpirun (make check-mpi) against the plain, one-process
# agave-train, on the tiny configuration with dropout 0.5 and one IAF step
# (so that every random draw matters) and a global batch of 8 images:
#  - 2 ranks (4 images each) and 3 ranks (3, 3, 2) give the checkpoint that 1
#    process gives after 6 steps: everything but the floats byte for byte
#    (configuration, counts, random state), the floats (parameters, optimiser
#    moments, Polyak average) within RTOL (below); train.csv the same figures;
#  - 1 rank of the MPI build is the plain build, bit for bit;
#  - the ranks' parameters are bit-identical: agave-train compares their hash
#    before every checkpoint (--checkpoint-every 2) and fails if they differ;
#  - a run checkpointed by 2 ranks resumes in 1 process, and one checkpointed
#    by 1 process resumes on 2 ranks, both ending where the straight run ends;
#  - rank 0 alone writes: one summary line, no duplicated train.csv rows,
#    exactly its four files in --out (with train.lock);
#  - an error (a batch smaller than the ranks) exits 2 with one message line;
#  - SIGTERM to mpirun: the ranks stop after the same step and rank 0 saves a
#    checkpoint that loads.
#
# RTOL = 1e-5, relative to each section's largest magnitude. The runs draw the
# same noise for every image (agave_model_set_batch_slice) and differ only in
# the order of float additions: each process sums its images' gradients, the
# allreduce sums the processes'. Measured after 6 and 20 steps with 2 and 3
# ranks: parameters and Polyak average 3e-8 to 5e-8, optimiser moments (which
# hold the gradients themselves) up to 2.3e-6. A wrong reduction is far
# outside: a sum of per-rank means (twice the gradient) changes the moments by
# a factor of 2; an unreduced or half-reduced gradient, or other noise, moves
# the parameters by 1e-4 or more.
#
# usage: tests/mpi/mpi_train.sh   (run by make check-mpi from the top of the tree)
set -eu
. tests/mpi/common.inc
RTOL=1e-5

opts="--config tiny --set dropout=0.5 --set T=1 --data $data --batch 8 --threads 1 --seed 3
      --log-every 2 --checkpoint-every 2"
# shellcheck disable=SC2086
train1() { "$build/bin/agave-train" $opts "$@"; }
# shellcheck disable=SC2086
trainN() { n=$1; shift; run "$n" "$mbuild/bin/agave-train" $opts "$@"; }

same_ckpt() { # a b rtol what
    "$tmp/ckpt_diff" "$1" "$2" "$3" >"$tmp/diff.txt" 2>&1 ||
        { cat "$tmp/diff.txt" >&2; fail "$4: the checkpoints differ"; }
    sed "s/^/    /" "$tmp/diff.txt"
}

# The loss columns of two train.csv files agree to 2e-6 bpd (printed with 6
# decimals: the last digit may round differently); the images/s column is
# timing and is left out.
same_csv() { # a b what
    [ "$(wc -l <"$1")" -eq "$(wc -l <"$2")" ] || fail "$3: train.csv has another number of rows"
    paste -d, "$1" "$2" | awk -F, -v what="$3" 'NR == 1 { next }
        { if ($1 != $14) { print what ": step " $1 " against " $14; exit 1 }
          for (c = 3; c <= 6; c++) { d = $c - $(c + 13); if (d < 0) d = -d
            if (d > 2e-6) { print what ": step " $1 " column " c ": " $c " against " $(c + 13); exit 1 } } }' ||
        fail "$3: train.csv figures differ"
}

# ---- 1 process against 2 and 3 ranks -------------------------------------------------
train1 --steps 6 --out "$tmp/one" >"$tmp/one.out" 2>"$tmp/one.err" ||
    { cat "$tmp/one.err" >&2; fail "the one-process run failed"; }
for n in 2 3; do
    trainN "$n" --steps 6 --out "$tmp/r$n" >"$tmp/r$n.out" 2>"$tmp/r$n.err" ||
        { cat "$tmp/r$n.err" >&2; fail "the $n-rank run failed"; }
    echo "$test_name: 1 process against $n ranks, 6 steps:"
    same_ckpt "$tmp/one/model.ckpt" "$tmp/r$n/model.ckpt" "$RTOL" "1 process against $n ranks"
    same_csv "$tmp/one/train.csv" "$tmp/r$n/train.csv" "1 process against $n ranks"
    grep -q "$n MPI ranks share each batch" "$tmp/r$n.err" || fail "no line about the $n ranks"
    grep -q "gradient allreduce" "$tmp/r$n.err" || fail "no allreduce time in the summary"
done

# ---- rank 0 alone writes --------------------------------------------------------------
[ "$(grep -c '^step 6: train' "$tmp/r2.out")" -eq 1 ] || fail "expected one summary line on stdout"
[ "$(grep -c 'checkpoint' "$tmp/r2.err")" -ge 1 ] || fail "no header on stderr"
[ "$(grep -c 'agave-train: configuration' "$tmp/r2.err")" -eq 1 ] ||
    fail "the header was printed more than once"
[ "$(ls "$tmp/r2" | tr '\n' ' ')" = "model.ckpt settings.log train.csv train.lock " ] ||
    fail "unexpected files in --out: $(ls "$tmp/r2")"
[ "$(wc -l <"$tmp/r2/train.csv")" -eq 4 ] || fail "train.csv should hold a header and 3 rows"
# The run state (the checkpoint's last 48 bytes before its CRC, docs/checkpoint.md).
run_state() { tail -c 52 "$1" | head -c 48 | od -An -tu8; }
[ "$(run_state "$tmp/one/model.ckpt")" = "$(run_state "$tmp/r2/model.ckpt")" ] ||
    fail "the checkpoint's run state depends on the number of ranks"

# ---- 1 rank of the MPI build is the plain build ------------------------------------------
trainN 1 --steps 6 --out "$tmp/r1" >/dev/null 2>"$tmp/r1.err" ||
    { cat "$tmp/r1.err" >&2; fail "the 1-rank run failed"; }
echo "$test_name: 1 rank of the MPI build against the plain build (bit for bit):"
same_ckpt "$tmp/one/model.ckpt" "$tmp/r1/model.ckpt" 0 "1 rank against the plain build"

# ---- resuming with another number of ranks --------------------------------------------------
trainN 2 --steps 3 --out "$tmp/two_then_one" >/dev/null 2>"$tmp/a.err" ||
    { cat "$tmp/a.err" >&2; fail "2 ranks, 3 steps failed"; }
"$build/bin/agave-train" --data "$data" --steps 6 --out "$tmp/two_then_one" --resume \
    >/dev/null 2>"$tmp/b.err" || { cat "$tmp/b.err" >&2; fail "resuming in 1 process failed"; }
echo "$test_name: 3 steps on 2 ranks, resumed for 3 in 1 process, against 6 in 1 process:"
same_ckpt "$tmp/one/model.ckpt" "$tmp/two_then_one/model.ckpt" "$RTOL" "2 ranks then 1"

train1 --steps 3 --out "$tmp/one_then_two" >/dev/null 2>"$tmp/c.err" ||
    { cat "$tmp/c.err" >&2; fail "1 process, 3 steps failed"; }
run 2 "$mbuild/bin/agave-train" --data "$data" --steps 6 --out "$tmp/one_then_two" --resume \
    >/dev/null 2>"$tmp/d.err" || { cat "$tmp/d.err" >&2; fail "resuming on 2 ranks failed"; }
echo "$test_name: 3 steps in 1 process, resumed for 3 on 2 ranks, against 6 in 1 process:"
same_ckpt "$tmp/one/model.ckpt" "$tmp/one_then_two/model.ckpt" "$RTOL" "1 process then 2 ranks"

# ---- errors ---------------------------------------------------------------------------------
rc=0
run 2 "$mbuild/bin/agave-train" --config tiny --data "$data" --batch 1 --out "$tmp/bad" \
    >"$tmp/bad.out" 2>"$tmp/bad.err" || rc=$?
[ "$rc" -ne 0 ] || fail "--batch 1 on 2 ranks was accepted"
[ "$(grep -c '^agave-train: ' "$tmp/bad.err")" -eq 1 ] ||
    { cat "$tmp/bad.err" >&2; fail "expected exactly one agave-train line for --batch 1"; }
grep -q 'smaller than the 2 MPI ranks' "$tmp/bad.err" || fail "the --batch 1 message is unclear"
[ ! -e "$tmp/bad" ] || fail "a refused run created its --out directory"
rc=0
run 2 "$mbuild/bin/agave-train" --config tiny --data "$tmp/missing" --out "$tmp/bad" \
    >/dev/null 2>"$tmp/bad.err" || rc=$?
[ "$rc" -ne 0 ] && [ "$(grep -c '^agave-train: ' "$tmp/bad.err")" -eq 1 ] ||
    { cat "$tmp/bad.err" >&2; fail "a missing data set: expected one agave-train line"; }

# ---- SIGTERM to mpirun -------------------------------------------------------------------------
# (mpirun itself in the background, not a function's subshell: $! is its pid)
# shellcheck disable=SC2086 # MPIRUN is a command line
$MPIRUN -np 2 "$mbuild/bin/agave-train" --config tiny --data "$data" --batch 8 --threads 1 \
    --steps 1000000 --log-every 1 --checkpoint-every 0 --out "$tmp/sig" \
    >"$tmp/sig.out" 2>"$tmp/sig.err" &
bg_pid=$!
i=0
while [ "$(cat "$tmp/sig/train.csv" 2>/dev/null | wc -l)" -lt 4 ]; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || fail "the SIGTERM run logged nothing in 60 s"
    sleep 0.1
done
kill -TERM "$bg_pid"
wait "$bg_pid" || true
bg_pid=""
grep -q 'stopped by SIGTERM' "$tmp/sig.err" || { cat "$tmp/sig.err" >&2; fail "no stop message"; }
[ "$(grep -c 'stopped by SIGTERM' "$tmp/sig.err")" -eq 1 ] || fail "the stop was reported twice"
"$build/bin/agave-eval" --checkpoint "$tmp/sig/model.ckpt" --data "$data" --samples 0 \
    --threads 1 >/dev/null 2>&1 || fail "the checkpoint saved on SIGTERM does not load"
step=$(sed -n 's/^step \([0-9]*\): train.*/\1/p' "$tmp/sig.out")
last=$(tail -n 1 "$tmp/sig/train.csv" | cut -d, -f1)
[ -n "$step" ] && [ "$step" = "$last" ] ||
    fail "stopped at step '$step' but train.csv ends at step $last"
echo "$test_name: SIGTERM to mpirun: both ranks stopped after step $step and rank 0 saved it"
echo "$test_name: all checks passed"
