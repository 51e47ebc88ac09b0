#!/bin/sh
# Tests of the programs agave-train, agave-eval and agave-sample on a tiny
# generated IDX data set (64 training and 16 test images of 1x8x8):
#  - --help of each program: exit 0, every option of the documented interface;
#  - error exits: bad arguments, missing and broken files give exit status 2,
#    exactly one line on stderr, nothing on stdout and no output files;
#  - a tiny end-to-end run: train 6 steps, evaluate (--json parsed), sample and
#    reconstruct (PNG signature), resume (3 + 3 steps give the same train.csv
#    loss columns as 6 straight, with dropout and IAF so that the random state
#    matters), and a resumed run that has nothing left to do;
#  - SIGINT and SIGTERM during training: exit 130 / 143, a checkpoint that
#    agave-eval loads, a train.csv that ends at the checkpoint, no stray files.
#
# usage: tests/programs.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory, default build).
set -eu
. tests/support/preamble.sh
. tests/support/tiny_idx.sh
need_programs agave-train agave-eval agave-sample
train=$bin/agave-train
evaluate=$bin/agave-eval
sample=$bin/agave-sample

# ---- a tiny IDX data set (tests/support/tiny_idx.sh) ----------------------------------
data=$tmp/data
mkdir "$data"
idx_file "$data/train-images-idx3-ubyte" 64 1
idx_file "$data/t10k-images-idx3-ubyte" 16 2
[ "$(wc -c <"$data/train-images-idx3-ubyte")" -eq $((16 + 64 * 64)) ] ||
    fail "the generated training file has the wrong size"
[ "$(wc -c <"$data/t10k-images-idx3-ubyte")" -eq $((16 + 16 * 64)) ] ||
    fail "the generated test file has the wrong size"

# ---- --help --------------------------------------------------------------------------
check_help() { # program option...
    prog=$1
    shift
    "$prog" --help >"$tmp/help" 2>"$tmp/help.err" || fail "$prog --help exits with $?"
    [ -s "$tmp/help.err" ] && fail "$prog --help writes to stderr: $(cat "$tmp/help.err")"
    grep -q '^usage: ' "$tmp/help" || fail "$prog --help has no usage line"
    for opt in "$@"; do
        grep -q -- "$opt" "$tmp/help" || fail "$prog --help does not mention $opt"
    done
}
check_help "$train" --config --set --data --steps --minutes --batch --seed --out --resume \
    --threads --checkpoint-every --log-every 'default: 16' 'default: 1000'
check_help "$evaluate" --checkpoint --data --samples --limit --json --per-image --weights \
    'default: 150'
check_help "$sample" --checkpoint --count --seed --reconstruct --data --out --weights 'default: 16'
echo "programs: --help of the three programs lists the interface and its defaults"

# ---- error exits -----------------------------------------------------------------------
# Runs a command that must fail with status 2, one line on stderr that
# contains $1, and nothing on stdout.
errors=0
expect_error() { # words-expected-in-message command...
    want=$1
    shift
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "exit status $rc, expected 2: $* (stderr: $(cat "$tmp/err"))"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "not exactly one line on stderr: $*: $(cat "$tmp/err")"
    grep -q -- "$want" "$tmp/err" || fail "stderr of '$*' does not mention '$want': $(cat "$tmp/err")"
    [ -s "$tmp/out" ] && fail "output on stdout from a failing command: $*"
    errors=$((errors + 1))
}
out=$tmp/never
expect_error "--data" "$train" --config tiny --out "$out" --steps 1
expect_error "--out" "$train" --config tiny --data "$data" --steps 1
expect_error "--config" "$train" --data "$data" --out "$out" --steps 1
expect_error "unknown key 'foo'" "$train" --config tiny --data "$data" --out "$out" --set foo=1
expect_error "not a valid value for F" "$train" --config tiny --data "$data" --out "$out" --set F=x
expect_error "filters must be" "$train" --config tiny --data "$data" --out "$out" --set F=0
expect_error "KEY=VALUE" "$train" --config tiny --data "$data" --out "$out" --set F
expect_error "unknown configuration" "$train" --config huge --data "$data" --out "$out"
expect_error "unknown option '--stpes'" "$train" --config tiny --data "$data" --out "$out" --stpes 3
expect_error "'abc' is not" "$train" --config tiny --data "$data" --out "$out" --steps abc
expect_error "unexpected argument" "$train" --config tiny --data "$data" --out "$out" extra
expect_error "$tmp/nothing" "$train" --config tiny --data "$tmp/nothing" --out "$out"
expect_error "does not exist" "$train" --config tiny --data "$data" --out "$out" --resume
expect_error "--count" "$sample" --checkpoint x.ckpt --out "$out.png" --count 0
expect_error "--data PATH is required" "$evaluate" --checkpoint x.ckpt
expect_error "unknown option" "$evaluate" --checkpoint x.ckpt --data "$data" --iwae 3
expect_error "--per-image" "$evaluate" --checkpoint x.ckpt --data "$data" \
    --per-image "$tmp/missing/scores.csv"
# A truncated data file is refused by the reader, with the file named.
mkdir "$tmp/broken"
head -c 1000 "$data/train-images-idx3-ubyte" >"$tmp/broken/train-images-idx3-ubyte"
expect_error "truncated" "$train" --config tiny --data "$tmp/broken" --out "$out"
[ -e "$out" ] && fail "a refused agave-train command created $out"
echo "programs: $errors bad commands exit with status 2 and one line on stderr"

# ---- a tiny end-to-end run ----------------------------------------------------------------
# Dropout and one IAF step make the losses depend on the random state, which a
# resumed run must restore along with the weights and the data order.
cfg="--config tiny --set dropout=0.5 --set T=1"
run=$tmp/run
# shellcheck disable=SC2086 # option lists
"$train" $cfg --data "$data" --steps 6 --log-every 1 --out "$run" $t1 >"$tmp/train.out" \
    2>"$tmp/train.err" || fail "agave-train exits with $?: $(cat "$tmp/train.err")"
for f in model.ckpt train.csv; do
    [ -s "$run/$f" ] || fail "agave-train did not write $f"
done
[ -e "$run/train.state" ] && fail "agave-train wrote train.state: the checkpoint holds the run state"
header="step,images_per_s,train_bpd,pixelcnn_bpd,aux_bpd,kl_bpd,test_elbo_bpd,test_kl_bpd"
header="$header,test_aux_bpd,elapsed_s,epoch,lr,grad_norm"
[ "$(head -n 1 "$run/train.csv")" = "$header" ] ||
    fail "train.csv header: $(head -n 1 "$run/train.csv")"
[ "$(cut -d, -f1 "$run/train.csv" | tail -n +2 | paste -sd' ')" = "1 2 3 4 5 6" ] ||
    fail "train.csv does not have one row per step 1..6: $(cat "$run/train.csv")"
# Without --eval-every the test_* columns stay empty (and nothing is evaluated);
# epoch is the data position (16 of 64 images a step), lr the default schedule
# (0.004 warmed up linearly over 100 steps: 0.00004 k at step k).
awk -F, 'NR > 1 && (NF != 13 || $3 + 0 <= 0 || $4 + 0 <= 0 || $5 + 0 <= 0 || $6 + 0 < 0 ||
    $7 != "" || $8 != "" || $9 != "" || $10 + 0 <= 0 || $11 != sprintf("%.4f", (NR - 1) / 4) ||
    ($12 - 0.00004 * (NR - 1)) ^ 2 > 1e-18 || $13 + 0 <= 0) { bad = 1 } END { exit bad }' "$run/train.csv" ||
    fail "train.csv has bad figures: $(cat "$run/train.csv")"
[ -e "$run/samples" ] && fail "a run without --sample-every made a samples directory"
grep -q '^step 6: train' "$tmp/train.out" || fail "agave-train summary: $(cat "$tmp/train.out")"
grep -q ' parameters, about [0-9]* MiB a training step; ' "$tmp/train.err" ||
    fail "agave-train does not print the parameter count and the step's memory"
grep -q "64 training images" "$tmp/train.err" || fail "agave-train does not print the data set size"
echo "programs: agave-train wrote model.ckpt and train.csv with one row per step"

# Evaluation: one JSON object with the documented keys, all numbers, then
# the run's description (new keys only ever appended); --per-image: one CSV
# row per image whose columns average to the JSON figures.
# shellcheck disable=SC2086
"$evaluate" --checkpoint "$run/model.ckpt" --data "$data" --samples 3 --json $t1 \
    --per-image "$tmp/scores.csv" >"$tmp/eval.json" 2>"$tmp/eval.err" ||
    fail "agave-eval exits with $?: $(cat "$tmp/eval.err")"
[ "$(wc -l <"$tmp/eval.json")" -eq 1 ] || fail "agave-eval --json prints more than one line"
keys="n_images elbo_bpd recon_bpd kl_bpd aux_bpd iwae_bpd iwae_samples baseline_bpd"
if command -v python3 >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    python3 - "$tmp/eval.json" "$tmp/scores.csv" "$run/model.ckpt" "$data" $keys <<'EOF' ||
import csv, json, math, sys
d = json.load(open(sys.argv[1]))
keys = sys.argv[5:]
for k in keys:
    assert k in d, "missing key " + k
    assert isinstance(d[k], (int, float)) and math.isfinite(d[k]), k + " is not a number"
assert list(d)[:len(keys)] == keys, "the original keys are not first, in order: %s" % list(d)
assert d["n_images"] == 16 and d["iwae_samples"] == 3, "wrong n_images or iwae_samples"
assert 0 < d["baseline_bpd"] <= 8, "baseline out of range"
assert abs(d["elbo_bpd"] - d["recon_bpd"] - d["kl_bpd"]) < 1e-4, "elbo != recon + kl"
described = {"checkpoint": sys.argv[3], "step": 6, "seed": 1, "data": sys.argv[4],
             "images_requested": 16, "complete": True, "weights": "average"}
assert list(d)[len(keys):] == list(described), "the appended keys: %s" % list(d)
for k, v in described.items():
    assert d[k] == v and type(d[k]) == type(v), "%s is %r, expected %r" % (k, d[k], v)
rows = list(csv.reader(open(sys.argv[2])))
figures = ["elbo_bpd", "recon_bpd", "kl_bpd", "aux_bpd", "iwae_bpd"]
assert rows[0] == ["index", "name"] + figures, "CSV header: %s" % rows[0]
assert [r[0] for r in rows[1:]] == [str(i) for i in range(16)], "CSV indices"
for c, k in enumerate(figures):
    column = [float(r[c + 2]) for r in rows[1:]]
    # (with an IAF step the KL is a sampled estimate: an image's may be negative)
    low = -1 if k == "kl_bpd" else 0
    assert all(low < v < 20 for v in column), k + ": a figure out of range"
    # every figure is printed to 1e-6, so their mean is within 1e-6 of the JSON's
    assert abs(sum(column) / 16 - d[k]) < 1.5e-6, "mean of %s %.7f, JSON %f" % (
        k, sum(column) / 16, d[k])
EOF
        fail "agave-eval --json --per-image: $(cat "$tmp/eval.json") $(head -3 "$tmp/scores.csv")"
    echo "programs: agave-eval --json has every key (python3); the --per-image rows average to it"
else
    for k in $keys; do
        grep -q "\"$k\": [0-9.-]" "$tmp/eval.json" || fail "agave-eval --json lacks $k"
    done
    echo "programs: agave-eval --json has every key (checked with grep: no python3)"
fi
# shellcheck disable=SC2086
"$evaluate" --checkpoint "$run/model.ckpt" --data "$data" --samples 0 --limit 5 $t1 \
    >"$tmp/eval.txt" 2>/dev/null || fail "agave-eval --limit 5 exits with $?"
[ "$(wc -l <"$tmp/eval.txt")" -eq 1 ] && grep -q '^5 test images: ELBO' "$tmp/eval.txt" &&
    grep -q 'baseline' "$tmp/eval.txt" || fail "agave-eval summary line: $(cat "$tmp/eval.txt")"
echo "programs: agave-eval --limit 5 --samples 0 prints one summary line with the baseline"

# Sampling and reconstructions: PNG files (signature 89 50 4e 47 0d 0a 1a 0a).
is_png() {
    [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = "89504e470d0a1a0a" ]
}
# shellcheck disable=SC2086
"$sample" --checkpoint "$run/model.ckpt" --count 3 --seed 5 --out "$tmp/samples.png" $t1 \
    >/dev/null 2>"$tmp/sample.err" || fail "agave-sample exits with $?: $(cat "$tmp/sample.err")"
is_png "$tmp/samples.png" || fail "agave-sample did not write a PNG"
# shellcheck disable=SC2086
"$sample" --checkpoint "$run/model.ckpt" --count 3 --reconstruct --data "$data" \
    --out "$tmp/recon.png" $t1 >/dev/null 2>"$tmp/sample.err" ||
    fail "agave-sample --reconstruct exits with $?: $(cat "$tmp/sample.err")"
is_png "$tmp/recon.png" || fail "agave-sample --reconstruct did not write a PNG"
ls -a "$tmp" | grep -q '\.tmp' && fail "a temporary file was left next to the PNGs"
echo "programs: agave-sample wrote sample and reconstruction PNGs"

# --weights: the default is the average (the same figures as --weights average),
# the raw parameters give others with the same z draws, in agave-eval and
# agave-sample; "average" on a checkpoint trained with ema=0 is refused.
for w in default average raw; do
    opt=""
    [ "$w" = default ] || opt="--weights $w"
    # shellcheck disable=SC2086
    "$evaluate" --checkpoint "$run/model.ckpt" --data "$data" --samples 0 --json $opt $t1 \
        >"$tmp/eval-$w.json" 2>"$tmp/eval-$w.err" || fail "agave-eval $opt exits with $?"
    # shellcheck disable=SC2086
    "$sample" --checkpoint "$run/model.ckpt" --count 2 --out "$tmp/sample-$w.png" $opt $t1 \
        >/dev/null 2>&1 || fail "agave-sample $opt exits with $?"
done
cmp -s "$tmp/eval-default.json" "$tmp/eval-average.json" && ! cmp -s "$tmp/eval-default.json" \
    "$tmp/eval-raw.json" || fail "agave-eval --weights: default $(cat "$tmp/eval-default.json") \
average $(cat "$tmp/eval-average.json") raw $(cat "$tmp/eval-raw.json")"
grep -q 'average weights' "$tmp/eval-default.err" && grep -q 'raw weights' "$tmp/eval-raw.err" ||
    fail "agave-eval does not say which weights it uses: $(cat "$tmp/eval-default.err")"
cmp -s "$tmp/sample-default.png" "$tmp/sample-average.png" && ! cmp -s "$tmp/sample-default.png" \
    "$tmp/sample-raw.png" || fail "agave-sample --weights: the PNGs do not follow the choice"
# shellcheck disable=SC2086
"$train" --config tiny --set ema=0 --data "$data" --steps 1 --out "$tmp/noavg" $t1 \
    >/dev/null 2>&1 || fail "agave-train --set ema=0 exits with $?"
expect_error "no averaged parameters" "$evaluate" --checkpoint "$tmp/noavg/model.ckpt" \
    --data "$data" --weights average
expect_error "expected average or raw" "$sample" --checkpoint "$run/model.ckpt" \
    --out "$tmp/x.png" --weights mean
echo "programs: --weights average (the default) and raw choose the parameters of agave-eval and agave-sample"

# Broken checkpoints: truncated, damaged (one byte changed: CRC), not a checkpoint.
head -c 2000 "$run/model.ckpt" >"$tmp/truncated.ckpt"
cp "$run/model.ckpt" "$tmp/damaged.ckpt"
printf 'X' | dd of="$tmp/damaged.ckpt" bs=1 seek=3000 conv=notrunc 2>/dev/null
expect_error "truncated" "$evaluate" --checkpoint "$tmp/truncated.ckpt" --data "$data"
expect_error "damaged" "$evaluate" --checkpoint "$tmp/damaged.ckpt" --data "$data"
expect_error "not a libagave checkpoint" "$evaluate" --checkpoint "$data/t10k-images-idx3-ubyte" \
    --data "$data"
expect_error "missing.ckpt" "$evaluate" --checkpoint "$tmp/missing.ckpt" --data "$data"
expect_error "truncated" "$sample" --checkpoint "$tmp/truncated.ckpt" --out "$tmp/x.png"
expect_error "architecture" "$train" --data "$data" --out "$run" --resume --set F=16
expect_error "already exists" "$train" --config tiny --data "$data" --out "$run"
[ -e "$tmp/x.png" ] && fail "a failed agave-sample wrote its PNG"
echo "programs: broken checkpoints and conflicting resumes are refused (exit 2, one line)"

# Files that are not regular files. A FIFO would make open() wait for a writer
# for ever (timeout turns that into a failure); a symbolic link planted in a
# run directory would redirect the run's reads and appends (train.csv's rows
# to the link's target). Each is refused with one line naming what it is.
mkfifo "$tmp/fifo"
expect_error "is a FIFO" timeout -k 5 60 "$evaluate" --checkpoint "$tmp/fifo" --data "$data"
expect_error "is a FIFO" timeout -k 5 60 "$sample" --checkpoint "$tmp/fifo" --out "$tmp/x.png"
expect_error "is a directory" "$evaluate" --checkpoint "$data" --data "$data"
expect_error "$tmp/fifo" timeout -k 5 60 "$train" --config tiny --data "$tmp/fifo" --out "$out"
mkdir "$tmp/fifo-data"
mkfifo "$tmp/fifo-data/train-images-idx3-ubyte"
expect_error "not a regular file" timeout -k 5 60 "$train" --config tiny --data "$tmp/fifo-data" \
    --out "$out"
for f in model.ckpt train.csv; do
    for kind in fifo link; do
        rm -rf "$tmp/odd"
        cp -R "$run" "$tmp/odd"
        rm "$tmp/odd/$f"
        if [ $kind = fifo ]; then
            mkfifo "$tmp/odd/$f"
            want="is a FIFO"
        else
            cp "$run/$f" "$tmp/victim.$f"
            ln -s "$tmp/victim.$f" "$tmp/odd/$f"
            want="symbolic link"
        fi
        # shellcheck disable=SC2086
        expect_error "$want" timeout -k 5 60 "$train" --data "$data" --out "$tmp/odd" --resume \
            --steps 8 $t1
        if [ $kind = link ]; then
            cmp -s "$run/$f" "$tmp/victim.$f" || fail "--resume changed the target of a link $f"
        fi
    done
done
[ -e "$tmp/x.png" ] && fail "a failed agave-sample wrote its PNG"
echo "programs: FIFOs, directories and links in place of files are refused (exit 2, one line)"

# Resume: 3 steps, then --resume to 6, must log exactly what 6 straight steps logged.
half=$tmp/half
# shellcheck disable=SC2086
"$train" $cfg --data "$data" --steps 3 --log-every 1 --out "$half" $t1 >/dev/null 2>&1 ||
    fail "agave-train --steps 3 exits with $?"
# shellcheck disable=SC2086
"$train" $cfg --data "$data" --steps 6 --log-every 1 --out "$half" --resume $t1 >/dev/null \
    2>"$tmp/resume.err" || fail "agave-train --resume exits with $?: $(cat "$tmp/resume.err")"
# (all columns but the timings images_per_s and elapsed_s)
cut -d, -f1,3-9,11- "$run/train.csv" >"$tmp/straight.csv"
cut -d, -f1,3-9,11- "$half/train.csv" >"$tmp/resumed.csv"
cmp -s "$tmp/straight.csv" "$tmp/resumed.csv" ||
    fail "3 + 3 resumed steps differ from 6 straight steps:
$(diff "$tmp/straight.csv" "$tmp/resumed.csv")"
# A run that has reached its budget does nothing and leaves the log alone.
cp "$half/train.csv" "$tmp/before.csv"
# shellcheck disable=SC2086
"$train" --data "$data" --steps 6 --out "$half" --resume $t1 >"$tmp/again.out" 2>&1 ||
    fail "a resumed run with nothing to do exits with $?"
grep -q 'nothing to do' "$tmp/again.out" || fail "no 'nothing to do': $(cat "$tmp/again.out")"
cmp -s "$tmp/before.csv" "$half/train.csv" || fail "a run with nothing to do changed train.csv"
echo "programs: 3 steps + --resume to 6 give the same losses as 6 straight steps"

# A run directory of libagave before 1.0: the checkpoint has no run state
# (format version 2) and DIR/train.state holds the run's settings and data
# position. to_legacy DIR STEP rewrites DIR's newer checkpoint that way: the
# run state section (the last 48 bytes before the CRC: seed epoch index batch
# threads images, u64 each) moves into train.state, and the header and the
# CRC-32 (gzip's trailer holds the same CRC) are rewritten.
le_bytes() { # value count: the count low bytes of value, little-endian
    v=$1 k=0
    while [ "$k" -lt "$2" ]; do
        # shellcheck disable=SC2059 # an octal escape made on purpose
        printf "\\$(printf %03o $((v % 256)))"
        v=$((v / 256)) k=$((k + 1))
    done
}
to_legacy() {
    ck=$1/model.ckpt
    len=$(wc -c <"$ck")
    # shellcheck disable=SC2046
    set -- "$1" "$2" $(od -An -tu8 -j $((len - 52)) -N 48 "$ck")
    [ $# -eq 8 ] || fail "to_legacy: no run state section in $ck"
    printf 'agave-train state 1\nseed %s\nbatch %s\nthreads %s\nimages %s\n' "$3" "$6" "$7" "$8" \
        >"$1/train.state"
    printf 'checkpoint step %s rejected 0 epoch %s index %s\n' "$2" "$4" "$5" >>"$1/train.state"
    payload=$(od -An -tu8 -j 16 -N 8 "$ck" | tr -d ' ')
    flags=$(od -An -tu1 -j 12 -N 1 "$ck" | tr -d ' ')
    head -c $((len - 52)) "$ck" >"$ck.body"
    { le_bytes 2 4; le_bytes $((flags & ~4)) 1; } |
        dd of="$ck.body" bs=1 seek=8 count=5 conv=notrunc 2>/dev/null
    le_bytes $((payload - 48)) 8 | dd of="$ck.body" bs=1 seek=16 conv=notrunc 2>/dev/null
    { cat "$ck.body"; gzip -c <"$ck.body" | tail -c 8 | head -c 4; } >"$ck"
    rm -f "$ck.body"
}
ckpt_version() { od -An -tu4 -j 8 -N 4 "$1" | tr -d ' '; }
# --batch 8: a resumed run that ignored train.state would take the default 16.
b8=$tmp/b8
legacy=$tmp/legacy
# shellcheck disable=SC2086
"$train" $cfg --data "$data" --steps 6 --batch 8 --log-every 1 --out "$b8" $t1 >/dev/null 2>&1 &&
    "$train" $cfg --data "$data" --steps 3 --batch 8 --log-every 1 --out "$legacy" $t1 \
        >/dev/null 2>&1 || fail "agave-train --batch 8 exits with $?"
[ "$(ckpt_version "$legacy/model.ckpt")" = 3 ] ||
    fail "agave-train's checkpoint is not format version 3 (with the run state)"
to_legacy "$legacy" 3
[ "$(ckpt_version "$legacy/model.ckpt")" = 2 ] || fail "to_legacy did not make a version-2 file"
"$evaluate" --checkpoint "$legacy/model.ckpt" --data "$data" --samples 0 --limit 2 $t1 \
    >/dev/null 2>"$tmp/legacy.err" || fail "the version-2 checkpoint does not load: $(cat "$tmp/legacy.err")"
for bad in 1000000 4294967297 0; do   # over the limit; wraps to 1 in 32 bits; under it
    rm -rf "$tmp/odd"
    cp -R "$legacy" "$tmp/odd"
    sed -i "s/^batch 8\$/batch $bad/" "$tmp/odd/train.state"
    # shellcheck disable=SC2086
    expect_error "batch $bad is outside 1..4096" "$train" --data "$data" --out "$tmp/odd" \
        --resume --steps 6 $t1
done
rm "$tmp/odd/train.state"
mkfifo "$tmp/odd/train.state"
# shellcheck disable=SC2086
expect_error "is a FIFO" timeout -k 5 60 "$train" --data "$data" --out "$tmp/odd" --resume \
    --steps 6 $t1
# shellcheck disable=SC2086
"$train" --data "$data" --steps 6 --log-every 1 --out "$legacy" --resume $t1 >/dev/null \
    2>"$tmp/legacy.err" || fail "resuming a pre-1.0 run directory exits with $?: $(cat "$tmp/legacy.err")"
cut -d, -f1,3-9,11- "$b8/train.csv" >"$tmp/straight.csv"
cut -d, -f1,3-9,11- "$legacy/train.csv" >"$tmp/resumed.csv"
cmp -s "$tmp/straight.csv" "$tmp/resumed.csv" || fail "a pre-1.0 run directory resumed with \
other batches than 6 straight steps: $(diff "$tmp/straight.csv" "$tmp/resumed.csv")"
[ -e "$legacy/train.state" ] && fail "train.state is still there after the checkpoint took it over"
[ "$(ckpt_version "$legacy/model.ckpt")" = 3 ] || fail "the resumed run's checkpoint is not version 3"
echo "programs: a pre-1.0 run directory (version-2 checkpoint + train.state) resumes exactly; its train.state is held to --batch's limits and refused as a FIFO"

# --eval-every and --sample-every: held-out figures in train.csv's test_*
# columns at steps 3 and 6 only (rows also at the --log-every steps), the
# same figures as agave-eval --samples 0 on the final checkpoint (same seed,
# weights and images), samples at steps 3 and 6; and a run resumed at step 3
# logs what the straight run logged (the evaluation leaves the training
# stream reseeded from the run's seed and step).
watch=$tmp/watch
wopts="--eval-every 3 --eval-images 10 --sample-every 3 --log-every 2"
# shellcheck disable=SC2086
"$train" $cfg --data "$data" --steps 6 $wopts --out "$watch" $t1 >/dev/null 2>"$tmp/watch.err" ||
    fail "agave-train --eval-every exits with $?: $(cat "$tmp/watch.err")"
[ "$(cut -d, -f1 "$watch/train.csv" | tail -n +2 | paste -sd' ')" = "2 3 4 6" ] ||
    fail "--eval-every 3 --log-every 2: rows $(cut -d, -f1 "$watch/train.csv" | paste -sd' ')"
awk -F, 'NR > 1 && (($1 % 3 == 0) != ($7 != "" && $8 != "" && $9 != "") ||
    ($1 % 3 == 0 && ($7 + 0 <= 0 || $8 + 0 < 0 || $9 + 0 <= 0))) { bad = 1 } END { exit bad }' \
    "$watch/train.csv" || fail "test_* columns: $(cat "$watch/train.csv")"
grep -q 'step 3 held-out (10 test images): ELBO' "$tmp/watch.err" ||
    fail "agave-train does not print the held-out figures: $(cat "$tmp/watch.err")"
# shellcheck disable=SC2086
"$evaluate" --checkpoint "$watch/model.ckpt" --data "$data" --samples 0 --limit 10 --json $t1 \
    >"$tmp/watch.json" 2>/dev/null || fail "agave-eval of the watched run exits with $?"
last=$(tail -n 1 "$watch/train.csv")
for pair in "7 elbo_bpd" "8 kl_bpd" "9 aux_bpd"; do
    set -- $pair
    csv=$(echo "$last" | cut -d, -f"$1")
    json=$(sed -n "s/.*\"$2\": \([0-9.-]*\).*/\1/p" "$tmp/watch.json")
    [ "$csv" = "$json" ] || fail "train.csv's step-6 $2 $csv differs from agave-eval's $json"
done
for step in 000003 000006; do
    is_png "$watch/samples/step-$step.png" || fail "--sample-every 3: no samples/step-$step.png"
done
[ "$(ls "$watch/samples" | wc -l)" -eq 2 ] || fail "samples/: $(ls "$watch/samples")"
wsplit=$tmp/wsplit
# shellcheck disable=SC2086
"$train" $cfg --data "$data" --steps 3 $wopts --out "$wsplit" $t1 >/dev/null 2>&1 &&
    "$train" $cfg --data "$data" --steps 6 $wopts --out "$wsplit" --resume $t1 >/dev/null 2>&1 ||
    fail "agave-train --eval-every 3 + --resume exits with $?"
cut -d, -f1,3-9,11- "$watch/train.csv" >"$tmp/straight.csv"
cut -d, -f1,3-9,11- "$wsplit/train.csv" >"$tmp/resumed.csv"
cmp -s "$tmp/straight.csv" "$tmp/resumed.csv" || fail "with --eval-every, 3 + 3 resumed steps \
differ from 6 straight steps: $(diff "$tmp/straight.csv" "$tmp/resumed.csv")"
echo "programs: --eval-every fills test_* (= agave-eval's figures) at its steps, --sample-every writes samples/, a resumed run logs the same"

# A train.csv of libagave 0.1 (six columns) is migrated on --resume: its rows
# get the new columns empty, the program says so, new rows are complete.
old=$tmp/oldlog
cp -r "$half" "$old"
rm -f "$old/train.lock"
{ echo "step,images_per_s,train_bpd,pixelcnn_bpd,aux_bpd,kl_bpd"
  tail -n +2 "$half/train.csv" | cut -d, -f1-6; } >"$old/train.csv"
# shellcheck disable=SC2086
"$train" --data "$data" --steps 8 --log-every 1 --out "$old" --resume $t1 >/dev/null \
    2>"$tmp/old.err" || fail "agave-train --resume on a 0.1 train.csv exits with $?: $(cat "$tmp/old.err")"
grep -q "six columns; rewritten" "$tmp/old.err" || fail "no migration note: $(cat "$tmp/old.err")"
[ "$(head -n 1 "$old/train.csv")" = "$header" ] || fail "migrated header: $(head -n 1 "$old/train.csv")"
awk -F, 'NR > 1 && NF != 13 { bad = 1 } NR >= 2 && NR <= 7 && $10 != "" { bad = 1 }
    NR >= 8 && ($10 == "" || $10 + 0 < 0) { bad = 1 } END { exit bad || NR != 9 }' "$old/train.csv" ||
    fail "migrated train.csv: $(cat "$old/train.csv")"
[ "$(sed -n 2,7p "$old/train.csv" | cut -d, -f1-6)" = "$(tail -n +2 "$half/train.csv" | cut -d, -f1-6)" ] ||
    fail "the migration changed the old rows"
echo "programs: a six-column train.csv from libagave 0.1 is migrated on --resume"

# --resume --set: the training settings change (the paper's pretrain-then-joint
# schedule: 3 steps of mode vae, then mode agave with a lower lr), are printed
# and logged in settings.log, and the resumed rows train the PixelCNN; the
# optimizer kind and switches to pixelcnn are refused.
sched=$tmp/sched
# shellcheck disable=SC2086
"$train" --config tiny --set mode=vae --data "$data" --steps 3 --log-every 1 --out "$sched" $t1 \
    >/dev/null 2>&1 || fail "agave-train --set mode=vae exits with $?"
# shellcheck disable=SC2086
"$train" --data "$data" --steps 5 --log-every 1 --out "$sched" --resume --set mode=agave \
    --set lr=0.001 $t1 >/dev/null 2>"$tmp/sched.err" ||
    fail "agave-train --resume --set mode=agave exits with $?: $(cat "$tmp/sched.err")"
grep -q 'changes the training settings: mode vae -> agave, lr 0.004 -> 0.001' "$tmp/sched.err" ||
    fail "--resume --set does not say what changed: $(cat "$tmp/sched.err")"
[ "$(wc -l <"$sched/settings.log")" -eq 2 ] && grep -q '^step 0: new run: .*mode=vae' \
    "$sched/settings.log" && grep -q '^step 3: resumed with mode vae -> agave, lr 0.004 -> 0.001$' \
    "$sched/settings.log" || fail "settings.log: $(cat "$sched/settings.log")"
awk -F, 'NR >= 2 && NR <= 4 && $4 + 0 != 0 { bad = 1 } NR >= 5 && $4 + 0 <= 0 { bad = 1 }
    END { exit bad }' "$sched/train.csv" ||
    fail "pixelcnn_bpd is not 0 in mode vae and > 0 after the switch: $(cat "$sched/train.csv")"
# shellcheck disable=SC2086
"$evaluate" --checkpoint "$sched/model.ckpt" --data "$data" --samples 0 $t1 >/dev/null \
    2>"$tmp/sched-eval.err" || fail "agave-eval of the switched run exits with $?"
grep -q 'mode agave' "$tmp/sched-eval.err" ||
    fail "the checkpoint did not keep the new mode: $(cat "$tmp/sched-eval.err")"
expect_error "optimizer kind cannot change" "$train" --data "$data" --steps 7 --out "$sched" \
    --resume --set optimizer=adam
expect_error "not to or from pixelcnn" "$train" --data "$data" --steps 7 --out "$sched" \
    --resume --set mode=pixelcnn
expect_error "lr_decay" "$train" --data "$data" --steps 7 --out "$sched" --resume \
    --set lr_decay=2
[ "$(wc -l <"$sched/settings.log")" -eq 2 ] || fail "a refused --resume wrote settings.log"
echo "programs: --resume --set switches mode vae -> agave and lr, prints and logs it; optimizer and pixelcnn switches are refused"

# --memory-limit: a batch over the limit is refused before anything is
# written, and the message names the batch that fits.
rc=0
# shellcheck disable=SC2086
"$train" --config tiny --data "$data" --batch 64 --memory-limit 5 --out "$tmp/capped" $t1 \
    >/dev/null 2>"$tmp/capped.err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/capped.err")" -eq 1 ] &&
    grep -q 'batches up to [0-9]* fit' "$tmp/capped.err" ||
    fail "--memory-limit 5 --batch 64: exit $rc: $(cat "$tmp/capped.err")"
[ ! -e "$tmp/capped" ] || fail "a run refused by --memory-limit created its output directory"
echo "programs: --memory-limit refuses a batch over it before writing: $(cat "$tmp/capped.err")"

# --precision: an unknown name is refused before anything is written; bf16
# trains where the CPU has AVX-512 BF16 and is refused, by name, elsewhere.
# shellcheck disable=SC2086
expect_error "expected fp32 or bf16" "$train" --config tiny --data "$data" --steps 1 \
    --precision fp16 --out "$tmp/prec" $t1
[ ! -e "$tmp/prec" ] || fail "a run refused by --precision created its output directory"
rc=0
# shellcheck disable=SC2086
"$train" --config tiny --data "$data" --steps 3 --precision bf16 --out "$tmp/bf16" $t1 \
    >/dev/null 2>"$tmp/bf16.err" || rc=$?
if [ "$rc" -eq 0 ]; then
    [ -s "$tmp/bf16/model.ckpt" ] || fail "--precision bf16 wrote no checkpoint"
    echo "programs: --precision fp16 refused; --precision bf16 trains (this CPU has AVX-512 BF16)"
else
    [ "$rc" -eq 2 ] && grep -q "AVX-512 BF16" "$tmp/bf16.err" ||
        fail "--precision bf16: exit $rc: $(cat "$tmp/bf16.err")"
    echo "programs: --precision fp16 refused; --precision bf16 refused here: $(cat "$tmp/bf16.err")"
fi

# A time budget stops a run that has a step budget far out of reach.
# shellcheck disable=SC2086
"$train" --config tiny --data "$data" --minutes 0.01 --steps 1000000 --out "$tmp/timed" $t1 \
    >"$tmp/timed.out" 2>/dev/null || fail "agave-train --minutes exits with $?"
steps=$(sed -n 's/^step \([0-9]*\): train.*/\1/p' "$tmp/timed.out")
[ -n "$steps" ] && [ "$steps" -ge 1 ] && [ "$steps" -lt 1000000 ] && [ -s "$tmp/timed/model.ckpt" ] ||
    fail "agave-train --minutes 0.01: $(cat "$tmp/timed.out")"
echo "programs: --minutes 0.01 stopped training after $steps steps with a checkpoint"

# ---- stop signals ---------------------------------------------------------------------
# A long run is stopped by a signal once its first periodic checkpoint exists:
# it must save, exit with 128 + the signal, and leave a loadable checkpoint and
# a log that ends at the checkpoint's step.
# A shell starts a script's background jobs with SIGINT ignored, and
# agave-train leaves an ignored signal ignored: env --default-signal gives
# the job the SIGINT a terminal's Ctrl-C would reach.
stop_run() { # signal expected-status
    dir=$tmp/stop-$1
    # shellcheck disable=SC2086
    env --default-signal=INT "$train" --config tiny --data "$data" --steps 1000000 --checkpoint-every 5 --log-every 3 \
        --out "$dir" $t1 >"$tmp/stop.out" 2>"$tmp/stop.err" &
    bg_pid=$!
    i=0
    while [ ! -s "$dir/model.ckpt" ]; do
        i=$((i + 1))
        [ "$i" -le 600 ] || fail "no checkpoint after 60 s of training"
        kill -0 "$bg_pid" 2>/dev/null || fail "agave-train ended early: $(cat "$tmp/stop.err")"
        sleep 0.1
    done
    kill "-$1" "$bg_pid"
    rc=0
    wait "$bg_pid" || rc=$?
    bg_pid=""
    [ "$rc" -eq "$2" ] || fail "SIG$1: exit status $rc, expected $2: $(cat "$tmp/stop.err")"
    grep -q 'stopped by SIG'"$1" "$tmp/stop.err" || fail "SIG$1: no message: $(cat "$tmp/stop.err")"
    ls -a "$dir" | grep -q 'tmp' && fail "SIG$1: temporary files left in $dir: $(ls -a "$dir")"
    # shellcheck disable=SC2086
    "$evaluate" --checkpoint "$dir/model.ckpt" --data "$data" --samples 0 --json $t1 \
        >"$tmp/stop-eval.json" 2>"$tmp/stop-eval.err" ||
        fail "SIG$1: agave-eval cannot use the checkpoint: $(cat "$tmp/stop-eval.err")"
    step=$(sed -n 's/.*"step": \([0-9]*\).*/\1/p' "$tmp/stop-eval.json")
    last=$(tail -n 1 "$dir/train.csv" | cut -d, -f1)
    [ -n "$step" ] && [ "$step" = "$last" ] ||
        fail "SIG$1: train.csv ends at step $last but the checkpoint is at step $step"
    echo "programs: SIG$1 at step $step: exit $rc, checkpoint saved and loadable"
}
stop_run INT 130
stop_run TERM 143

# SIGINT during an evaluation: it stops within a forward pass, inside a batch
# (a call of --batch 2 images, 2 x 2000 samples, is under way), reports the
# images finished so far (JSON complete false, their CSV rows, which average
# to the JSON figures) and exits with 130. Before that it printed an estimate
# of its running time.
# shellcheck disable=SC2086
env --default-signal=INT "$evaluate" --checkpoint "$run/model.ckpt" --data "$data" \
    --samples 2000 --batch 2 --json --per-image "$tmp/part.csv" $t1 >"$tmp/part.json" \
    2>"$tmp/part.err" &
bg_pid=$!
i=0
until grep -q '^evaluated 2/16 images' "$tmp/part.err"; do
    i=$((i + 1))
    [ "$i" -le 1200 ] || fail "agave-eval finished no batch in 120 s"
    kill -0 "$bg_pid" 2>/dev/null || fail "agave-eval ended early: $(cat "$tmp/part.err")"
    sleep 0.1
done
kill -INT "$bg_pid"
sent=$(date +%s)
rc=0
wait "$bg_pid" || rc=$?
bg_pid=""
[ $(($(date +%s) - sent)) -le 10 ] || fail "agave-eval took over 10 s to stop after SIGINT"
[ "$rc" -eq 130 ] || fail "agave-eval after SIGINT: exit $rc, expected 130: $(cat "$tmp/part.err")"
grep -q 'stopped by SIGINT after [0-9]* of 16 images' "$tmp/part.err" ||
    fail "agave-eval after SIGINT: no message: $(cat "$tmp/part.err")"
grep -q '^agave-eval: about .* in all, .* left, for 16 images x 2000 samples' "$tmp/part.err" ||
    fail "agave-eval printed no running-time estimate: $(cat "$tmp/part.err")"
if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/part.json" "$tmp/part.csv" <<'EOF' ||
import csv, json, sys
d = json.load(open(sys.argv[1]))
rows = list(csv.reader(open(sys.argv[2])))[1:]
n = d["n_images"]
assert d["complete"] is False and d["images_requested"] == 16, "complete/images_requested"
# the signal came during the second call (images 2 and 3): it must stop there
assert 2 <= n <= 3, "%d images finished, not those before the stop's batch" % n
assert [r[0] for r in rows] == [str(i) for i in range(n)], "CSV rows of the finished images"
for c, k in enumerate(["elbo_bpd", "recon_bpd", "kl_bpd", "aux_bpd", "iwae_bpd"]):
    mean = sum(float(r[c + 2]) for r in rows) / n
    assert abs(mean - d[k]) < 1.5e-6, "mean of %s %.7f, JSON %f" % (k, mean, d[k])
EOF
        fail "agave-eval after SIGINT: $(cat "$tmp/part.json") $(cat "$tmp/part.csv")"
fi
# Its baseline is that of the finished images, as when only they are asked for.
done_images=$(($(wc -l <"$tmp/part.csv") - 1))
# shellcheck disable=SC2086
"$evaluate" --checkpoint "$run/model.ckpt" --data "$data" --samples 0 --limit "$done_images" \
    --json $t1 >"$tmp/first.json" 2>/dev/null || fail "agave-eval --limit $done_images exits with $?"
base() { sed 's/.*"baseline_bpd": \([0-9.]*\).*/\1/' "$1"; }
[ "$(base "$tmp/part.json")" = "$(base "$tmp/first.json")" ] ||
    fail "the stopped run's baseline $(base "$tmp/part.json") is not that of its $done_images images, $(base "$tmp/first.json")"
echo "programs: SIGINT during agave-eval: exit 130, the figures of the $done_images finished images"

# A signal ignored at start stays ignored (nohup's SIGHUP): the run goes on
# after SIGHUP and still stops cleanly on SIGTERM.
dir=$tmp/nohup
# shellcheck disable=SC2086
(trap '' HUP && exec "$train" --config tiny --data "$data" --steps 1000000 --checkpoint-every 5 \
    --out "$dir" $t1 >"$tmp/nohup.out" 2>"$tmp/nohup.err") &
bg_pid=$!
i=0
while [ ! -s "$dir/model.ckpt" ]; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "nohup: no checkpoint after 60 s of training"
    sleep 0.1
done
kill -HUP "$bg_pid"
# Meanwhile a second trainer on the same directory is refused (DIR/train.lock).
rc=0
# shellcheck disable=SC2086
"$train" --data "$data" --out "$dir" --resume --steps 1000000 $t1 >/dev/null \
    2>"$tmp/second.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'another process is using' "$tmp/second.err" ||
    fail "a second agave-train on a busy directory: exit $rc: $(cat "$tmp/second.err")"
sleep 0.3
kill -0 "$bg_pid" 2>/dev/null || fail "agave-train started with SIGHUP ignored ended on SIGHUP"
kill -TERM "$bg_pid"
rc=0
wait "$bg_pid" || rc=$?
bg_pid=""
[ "$rc" -eq 143 ] || fail "nohup: SIGTERM after an ignored SIGHUP: exit $rc, expected 143"
echo "programs: a SIGHUP ignored at start (nohup) stays ignored; SIGTERM then stops the run"
echo "programs: a second agave-train on a directory in use is refused (exit 2, one line)"

# Temporary files of a write that a kill -9 interrupted are removed on resume.
printf 'partial' >"$dir/model.ckpt.tmp.AbC123"
printf 'partial' >"$dir/train.state.tmp.XyZ789"
# shellcheck disable=SC2086
"$train" --data "$data" --out "$dir" --resume --steps 1 $t1 >/dev/null 2>"$tmp/stale.err" ||
    fail "resume with stale temporaries: $(cat "$tmp/stale.err")"
grep -q 'removed 2 temporary files' "$tmp/stale.err" ||
    fail "resume did not report the stale temporaries: $(cat "$tmp/stale.err")"
ls -a "$dir" | grep -q 'tmp' && fail "stale temporaries left in $dir: $(ls -a "$dir")"
echo "programs: --resume removes the temporary files an interrupted write left"

echo "programs: all checks passed"
