#!/bin/sh
# Interrupted runs (docs/reliability.md): agave-train is killed again and
# again at random moments and resumed each time; no interruption may leave a
# checkpoint that fails to load, or make the run go backwards.
#
# agave-train trains the tiny configuration on a generated 1x8x8 IDX data set
# with a checkpoint after every step (--checkpoint-every 1), so that a good
# share of the kills land while a checkpoint (or a train.csv
# row) is being written. Each round:
#   1. start agave-train (--resume after the first round), let it run a
#      random 0.05-0.6 s (reproducible from KILL_SEED),
#   2. stop it: mostly kill -9, sometimes SIGTERM or SIGINT (a clean stop:
#      exit 143 / 130 and a checkpoint of the step it reached), sometimes
#      SIGINT twice (quit at once, leaving the previous checkpoint);
#      a run that ends before the signal must not have failed (exit 2);
#   3. agave-eval --json on the checkpoint must succeed and report a step
#      that is never lower than the previous round's.
# At the end: the resumed run picks up where the checkpoint is, and train.csv
# has strictly increasing steps and whole rows. A kill that lands between
# the temporary file's creation and its rename (the write and its fsync,
# a few milliseconds) leaves DIR/model.ckpt.tmp.*: the count of those says
# how often that case was hit (they are removed after each round).
#
# usage: tests/kill_train.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (default build), KILL_ROUNDS (default 24),
# KILL_SEED (default: the time; printed, to reproduce a failure).
set -eu
. tests/support/preamble.sh
train=$bin/agave-train
evaluate=$bin/agave-eval
rounds=${KILL_ROUNDS:-24}
seed=${KILL_SEED:-$(date +%s)}
# Killed from outside (the test runner's timeout): say where it was.
trap 'echo "kill_train: stopped from outside (KILL_SEED=$seed) during: $(tail -n 1 "$tmp/progress" 2>/dev/null)" >&2; exit 1' TERM INT

# One line per action in $tmp/progress; a failure (this fail, in place of the
# preamble's) prints the last few, so a hang or a failure in CI says which
# round, signal and process it was.
note() { echo "$*" >>"$tmp/progress"; }
fail() {
    echo "kill_train: FAIL (KILL_SEED=$seed, round ${round:-0}): $*" >&2
    echo "kill_train: the last actions were:" >&2
    tail -n 8 "$tmp/progress" 2>/dev/null | sed 's/^/    /' >&2
    exit 1
}

# Waits at most $2 seconds for process $1 to end and sets rc to its exit
# status. A process still alive then is hung: its threads' stacks (gdb, when
# installed) go into the failure message before it is killed.
wait_bounded() { # pid seconds what
    t=0
    while kill -0 "$1" 2>/dev/null; do
        grep -q '^State:.*Z' /proc/"$1"/status 2>/dev/null && break   # ended, not reaped
        sleep 0.1
        t=$((t + 1))
        if [ "$t" -ge $(($2 * 10)) ]; then
            stacks="(gdb not installed)"
            if command -v gdb >/dev/null 2>&1; then
                stacks=$(timeout 60 gdb -p "$1" -batch -ex 'thread apply all bt' 2>&1 |
                    grep -E '^(#|Thread)' | head -n 80)
            fi
            state=$(grep -E '^State' /proc/"$1"/status 2>/dev/null)
            kill -KILL "$1" 2>/dev/null || true
            wait "$1" 2>/dev/null || true
            bg_pid=""
            fail "$3 still running after $2 s ($state); stacks:
$stacks
stderr: $(tail -n 5 "$tmp/train.err" 2>/dev/null)"
        fi
    done
    rc=0
    wait "$1" 2>/dev/null || rc=$?   # (2>/dev/null: the shell's "Killed" notice)
}
for p in "$train" "$evaluate"; do
    [ -x "$p" ] || fail "$p is not built"
done

# A tiny IDX data set: magic 00 00 08 03, count, rows, cols (big-endian u32),
# then 64 images of 8x8 pixels (a gradient plus a pseudo-random term).
idx_file() { # path count seed
    count=$(printf '\\%03o' "$2")
    printf "\\000\\000\\010\\003\\000\\000\\000$count\\000\\000\\000\\010\\000\\000\\000\\010" >"$1"
    printf "$(awk -v n="$2" -v s="$3" 'BEGIN {
        for (i = 0; i < n * 64; i++) {
            s = (s * 75 + 74) % 65537
            printf "\\%03o", (int(i % 64 / 8) * 24 + (i % 8) * 6 + s % 64) % 256
        } }')" >>"$1"
}
data=$tmp/data
mkdir "$data"
idx_file "$data/train-images-idx3-ubyte" 64 1
idx_file "$data/t10k-images-idx3-ubyte" 8 2
out=$tmp/run
ckpt=$out/model.ckpt

# Each round's delay and signal, drawn in one go from the seed (one awk
# generator: nearby seeds given to separate srand calls give nearby numbers).
awk -v s="$seed" -v n="$rounds" 'BEGIN {
    srand(s)
    for (i = 1; i <= n; i++) {
        d = 0.05 + 0.55 * rand()
        u = rand()
        printf "%.3f %s\n", d, u < 0.3 ? "KILL" : u < 0.6 ? "KILLW" : u < 0.75 ? "TERM" : u < 0.9 ? "INT" : "INT2"
    } }' >"$tmp/plan"

# The step of the checkpoint, from agave-eval's stderr ("..., step N, ...");
# fails unless agave-eval loads it and prints its JSON.
checkpoint_step() {
    rc=0
    note "round $round: agave-eval"
    timeout -k 5 300 "$evaluate" --checkpoint "$ckpt" --data "$data" --limit 4 --samples 1 --json \
        --threads 1 >"$tmp/eval.out" 2>"$tmp/eval.err" || rc=$?
    [ "$rc" -ne 124 ] || fail "agave-eval did not finish in 300 s: $(cat "$tmp/eval.err")"
    [ "$rc" -eq 0 ] || fail "agave-eval cannot use the checkpoint (exit $rc): $(cat "$tmp/eval.err")"
    grep -q '"elbo_bpd"' "$tmp/eval.out" || fail "agave-eval --json printed: $(cat "$tmp/eval.out")"
    sed -n 's/.*, step \([0-9][0-9]*\), .*/\1/p' "$tmp/eval.err" | head -n 1
}

# env --default-signal=INT: a shell starts a script's background jobs with
# SIGINT ignored, and agave-train keeps an ignored signal ignored.
start() { # extra options...
    env --default-signal=INT "$train" --data "$data" --out "$out" --steps 1000000 --batch 4 --threads 1 \
        --checkpoint-every 1 --log-every 1 "$@" >"$tmp/train.out" 2>"$tmp/train.err" &
    bg_pid=$!
    note "round $round: agave-train $* started (pid $bg_pid)"
}

# Round 0: a fresh run, left alone until its first checkpoint exists.
round=0
start --config tiny --set T=1 --set dropout=0.1
waited=0
while [ ! -e "$ckpt" ]; do
    kill -0 "$bg_pid" 2>/dev/null || fail "agave-train ended at once: $(cat "$tmp/train.err")"
    sleep 0.05
    waited=$((waited + 1))
    [ "$waited" -lt 400 ] || fail "no checkpoint after 20 s"
done

last=0
kills=0
mid_write=0
clean=0
double=0
round=1
while [ "$round" -le "$rounds" ]; do
    if [ "$round" -gt 1 ]; then
        start --resume
    fi
    delay=$(sed -n "${round}p" "$tmp/plan" | cut -d' ' -f1)
    how=$(sed -n "${round}p" "$tmp/plan" | cut -d' ' -f2)
    sleep "$delay"
    if [ "$how" = KILLW ]; then
        # Aimed at a checkpoint write: poll (shell builtins only, a few
        # microseconds a turn) until agave_model_save's temporary file
        # exists, then kill at once.
        n=0
        while [ "$n" -lt 100000 ]; do
            for f in "$ckpt".tmp.*; do [ -e "$f" ] && break 2; done
            n=$((n + 1))
        done
    fi
    if ! kill -0 "$bg_pid" 2>/dev/null; then
        rc=0
        wait "$bg_pid" 2>/dev/null || rc=$?
        fail "agave-train ended by itself with exit status $rc: $(cat "$tmp/train.err")"
    fi
    note "round $round: SIG$how after ${delay} s"
    case $how in
    KILL | KILLW) kill -KILL "$bg_pid"; want=137; kills=$((kills + 1)) ;;
    TERM) kill -TERM "$bg_pid"; want=143; clean=$((clean + 1)) ;;
    INT) kill -INT "$bg_pid"; want=130; clean=$((clean + 1)) ;;
    INT2) kill -INT "$bg_pid"; kill -INT "$bg_pid" 2>/dev/null || true; want=130; double=$((double + 1)) ;;
    esac
    wait_bounded "$bg_pid" 120 "agave-train after SIG$how"
    bg_pid=""
    # A clean stop exits 128 + signal, as does a signal during start-up
    # (training then never begins; before the handlers exist, the default
    # action kills the process with the same status).
    [ "$rc" -eq "$want" ] || fail "after SIG$how: exit status $rc, expected $want: $(cat "$tmp/train.err")"
    step=$(checkpoint_step)
    [ -n "$step" ] || fail "agave-eval did not report the checkpoint's step: $(cat "$tmp/eval.err")"
    [ "$step" -ge "$last" ] || fail "the checkpoint went back from step $last to $step after SIG$how"
    if [ "$how" = TERM ] || [ "$how" = INT ]; then
        # A clean stop saves the step it reached, which it prints on stdout
        # (unless the signal came during start-up, when it prints nothing).
        said=$(sed -n 's/^step \([0-9][0-9]*\): train .*/\1/p' "$tmp/train.out")
        [ -z "$said" ] || [ "$said" -eq "$step" ] ||
            fail "SIG$how: agave-train reported step $said but the checkpoint holds $step"
    fi
    # A kill between mkstemp and rename leaves the temporary file: count it
    # and remove it (nothing else does; the polling above must not see an
    # old one).
    for f in "$ckpt".tmp.*; do
        [ -e "$f" ] || continue
        mid_write=$((mid_write + 1))
        rm -f "$f"
    done
    last=$step
    round=$((round + 1))
done

# Kills aimed at a write until one lands inside it (most do; a miss only
# means the write ended first), each followed by the same checks.
tries=0
while [ "$mid_write" -eq 0 ]; do
    tries=$((tries + 1))
    [ "$tries" -le 10 ] || fail "no kill landed inside a checkpoint write in 10 tries"
    start --resume
    sleep 0.2
    n=0
    while [ "$n" -lt 100000 ]; do
        for f in "$ckpt".tmp.*; do [ -e "$f" ] && break 2; done
        n=$((n + 1))
    done
    note "round $round: aimed SIGKILL, try $tries"
    kill -KILL "$bg_pid"
    wait_bounded "$bg_pid" 120 "agave-train after SIGKILL"
    bg_pid=""
    for f in "$ckpt".tmp.*; do
        [ -e "$f" ] || continue
        mid_write=$((mid_write + 1))
        rm -f "$f"
    done
    step=$(checkpoint_step)
    [ "$step" -ge "$last" ] || fail "the checkpoint went back from step $last to $step"
    last=$step
done

# The run continues from the last checkpoint: a resumed run says so.
start --resume
n=0
until grep -q "resuming at step" "$tmp/train.err"; do   # start-up done (slow under ASan)
    n=$((n + 1))
    [ "$n" -le 600 ] || fail "the final resumed run printed no 'resuming at step' in 60 s"
    kill -0 "$bg_pid" 2>/dev/null || fail "the final resumed run ended: $(cat "$tmp/train.err")"
    sleep 0.1
done
sleep 0.2
note "final run: SIGTERM"
kill -TERM "$bg_pid"
wait_bounded "$bg_pid" 120 "the final agave-train after SIGTERM"
bg_pid=""
[ "$rc" -eq 143 ] || fail "the final resumed run exited with $rc: $(cat "$tmp/train.err")"
grep -q "resuming at step $last " "$tmp/train.err" ||
    fail "the final run did not resume at step $last: $(grep resuming "$tmp/train.err")"
final=$(checkpoint_step)
[ "$final" -ge "$last" ] || fail "the final checkpoint (step $final) is behind step $last"

# train.csv: the header, then whole rows with strictly increasing steps (rows
# written after a checkpoint by a killed run are dropped on resume).
awk -F, 'NR == 1 { next }
         NF != 13 || $1 !~ /^[0-9]+$/ { print "row " NR " is damaged: " $0; exit 1 }
         $1 + 0 <= prev { print "row " NR " goes back to step " $1 " after " prev; exit 1 }
         { prev = $1 + 0 }' "$out/train.csv" >"$tmp/csv.err" ||
    fail "train.csv: $(cat "$tmp/csv.err")"

echo "kill_train: $rounds rounds (KILL_SEED=$seed): $kills kill -9, $clean SIGTERM/SIGINT," \
    "$double double SIGINT; the checkpoint always loaded, steps 0 -> $final never went back," \
    "train.csv consistent; $mid_write kills landed during a checkpoint write"
