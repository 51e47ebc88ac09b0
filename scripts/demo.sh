#!/bin/sh
# The demo (`make demo`): trains the fashion configuration on Fashion-MNIST for
# DEMO_MINUTES minutes, evaluates it on the first 1,000 test images (ELBO and
# IWAE with K = 10), draws samples and reconstructions, and writes into demo/:
#   model.ckpt, train.csv, settings.log   the run (agave-train)
#   eval.json                            the figures (agave-eval --json)
#   samples.png                          f(z) beside its PixelCNN sample (Fig. 1c)
#   reconstructions.png                  test image / f(z) / PixelCNN sample rows (Fig. 3)
#   summary.txt                          what was run, the figures and the timings
# `make demo` installs the packages (scripts/deps.sh demo) and builds first.
#
# usage: scripts/demo.sh
# Environment (defaults in brackets):
#   DEMO_MINUTES   minutes of training [10]
#   DEMO_DATA      the data set [/usr/share/datasets/fashion-mnist]
#   DEMO_OUT       output directory [demo]
#   DEMO_SAMPLES   samples and reconstructions drawn [16]
#   DEMO_EVAL      test images evaluated [1000]
#   DEMO_IWAE      IWAE importance samples [10]
#   DEMO_THREADS   threads [all online CPUs]
#   OMP_WAIT_POLICY  [passive] (see below)
#   AGAVE_BUILD    build directory holding bin/ [build]
# Each run starts afresh (agave-train --force); the previous demo/ files are
# replaced only when the new ones are complete.
set -eu

minutes=${DEMO_MINUTES:-10}
data=${DEMO_DATA:-/usr/share/datasets/fashion-mnist}
out=${DEMO_OUT:-demo}
count=${DEMO_SAMPLES:-16}
n_eval=${DEMO_EVAL:-1000}
iwae=${DEMO_IWAE:-10}
bin=${AGAVE_BUILD:-build}/bin
threads=""
[ -n "${DEMO_THREADS:-}" ] && threads="--threads $DEMO_THREADS"
# OpenMP threads that busy-wait (libgomp's default) slow each other down
# badly when the machine has other work: 3 against 10.5 training images/s with
# 2 threads on 2 busy cores (docs/programs.md, "Timings"). Sleeping waits cost
# next to nothing when the cores are free. A value already set is kept.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMP_WAIT_POLICY

for p in agave-train agave-eval agave-sample; do
    if [ ! -x "$bin/$p" ]; then
        echo "demo: $bin/$p is missing: run 'make demo' (or 'make' first)" >&2
        exit 2
    fi
done
if [ ! -d "$data" ]; then
    echo "demo: no data set at $data: install it with 'sudo apt-get install dataset-fashion-mnist'" >&2
    echo "demo: (or point DEMO_DATA at a directory holding the Fashion-MNIST IDX files)" >&2
    exit 2
fi

now() { date +%s; }
took() { # seconds since $1, as "Nm SSs"
    s=$(($(now) - $1))
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}
say() { echo "demo: $*" >&2; }

start=$(now)
say "training the fashion configuration on $data for $minutes minutes"
t=$(now)
# Each program prints its one-line result on stdout (kept for the summary) and
# its progress on stderr; a failing program stops the demo with its status.
# shellcheck disable=SC2086 # optional words
train_line=$("$bin/agave-train" --config fashion --data "$data" --minutes "$minutes" \
    --out "$out" --force --log-every 25 $threads)
train_time=$(took "$t")

say "evaluating on the first $n_eval test images (ELBO, IWAE with K = $iwae)"
t=$(now)
# shellcheck disable=SC2086
eval_line=$("$bin/agave-eval" --checkpoint "$out/model.ckpt" --data "$data" --limit "$n_eval" \
    --samples "$iwae" --output "$out/eval.json" $threads)
eval_time=$(took "$t")

say "drawing $count samples"
t=$(now)
# shellcheck disable=SC2086
"$bin/agave-sample" --checkpoint "$out/model.ckpt" --count "$count" --seed 1 \
    --out "$out/samples.png" $threads >/dev/null
sample_time=$(took "$t")

say "reconstructing $count test images"
t=$(now)
# shellcheck disable=SC2086
"$bin/agave-sample" --checkpoint "$out/model.ckpt" --count "$count" --seed 1 --reconstruct \
    --data "$data" --out "$out/reconstructions.png" $threads >/dev/null
recon_time=$(took "$t")
total_time=$(took "$start")

# The summary is written under a temporary name and renamed: never half a file.
cat >"$out/summary.txt.tmp" <<EOF
libagave demo: the fashion configuration on Fashion-MNIST ($(date -u '+%Y-%m-%d %H:%M UTC'))

training ($minutes min budget, $train_time):
  $train_line
test set ($n_eval images, $eval_time):
  $eval_line
samples:          $out/samples.png ($count, f(z) beside the PixelCNN sample; $sample_time)
reconstructions:  $out/reconstructions.png ($count; rows: test image, f(z), PixelCNN sample; $recon_time)
training log:     $out/train.csv; checkpoint: $out/model.ckpt; figures: $out/eval.json
total: $total_time

bpd = bits per dimension (lower is better). The ELBO bounds the model's negative
log-likelihood; IWAE is a tighter bound; the histogram baseline is what a model of
independent pixels achieves. docs/programs.md explains every figure.
EOF
mv -f "$out/summary.txt.tmp" "$out/summary.txt"
echo
cat "$out/summary.txt"
