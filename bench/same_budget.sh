#!/bin/sh
# What the library's defaults give in a fixed budget (issue 13): trains the
# fashion configuration at batch 32 with the defaults for M minutes (or N
# steps), then evaluates the ELBO, its KL term and the VAE's bound on the
# auxiliary image on the first 2,000 Fashion-MNIST test images, with the
# averaged parameters (the default) and with the raw ones, one z sample per
# image (agave-eval --samples 0, seed 1). Prints the machine's state with the
# figures, so that a measurement can be recorded as it was taken.
#
# usage: bench/same_budget.sh [--minutes M | --steps N] [--threads T] [--out DIR]
#                             [--data PATH] [--images N] [-- agave-train options]
#   --minutes M   training time budget (default 10; the issue's target is for 10)
#   --steps N     a step budget instead (comparing settings at equal steps on a busy machine)
#   --threads T   threads of training and evaluation (default: the online CPUs)
#   --out DIR     the run's directory (default: a temporary one, removed afterwards)
#   --data PATH   Fashion-MNIST (default /usr/share/datasets/fashion-mnist)
#   --images N    test images evaluated (default 2000)
#   after --, options for agave-train, e.g. -- --set lr=0.004 --set lr_warmup=100
# Timed figures for docs/: flock /work/coord/bench.lock sh bench/same_budget.sh
# Environment: AGAVE_BUILD (default build), whose bin/ must hold the programs.
# Target with the defaults (issue 13): ELBO <= 3.15 bpd with KL >= 0.1 after 10 minutes.
set -eu

build=${AGAVE_BUILD:-build}
minutes=10 steps="" threads=$(getconf _NPROCESSORS_ONLN) out="" images=2000
data=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) minutes=$2 steps="" ; shift 2 ;;
    --steps) steps=$2 minutes="" ; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --) shift; break ;;
    *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
for p in agave-train agave-eval; do
    [ -x "$build/bin/$p" ] || { echo "same_budget: $build/bin/$p is missing: run make" >&2; exit 2; }
done
[ -d "$data" ] || { echo "same_budget: no data at $data (sh scripts/deps.sh demo)" >&2; exit 2; }
keep=1
if [ -z "$out" ]; then
    out=$(mktemp -d)/run
    keep=0
fi
cleanup() { [ "$keep" -eq 1 ] || rm -rf "$(dirname "$out")"; }
trap cleanup EXIT

budget="--minutes $minutes"
[ -n "$steps" ] && budget="--steps $steps"
state() { # the machine's state, one line
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(getconf _NPROCESSORS_ONLN) CPUs," \
        "load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
}
echo "same_budget: start: $(state)"
# shellcheck disable=SC2086 # option lists
"$build/bin/agave-train" --config fashion --data "$data" --batch 32 $budget --threads "$threads" \
    --checkpoint-every 0 --log-every 50 --out "$out" "$@" >"$out.train" 2>"$out.err" ||
    { cat "$out.err" >&2; exit 1; }
trained=$(sed -n 's/^step \([0-9]*\): train.*, \([0-9.]*\) images\/s.*/\1 steps, \2 images\/s/p' "$out.train")
cfg=$(sed -n 's/^agave-train: configuration [^:]*: //p' "$out.err")
echo "same_budget: trained $budget at batch 32, $threads threads: $trained"
echo "same_budget: configuration: $cfg"
echo "same_budget: after training: $(state)"
for w in average raw; do
    if ! "$build/bin/agave-eval" --checkpoint "$out/model.ckpt" --data "$data" --samples 0 \
        --limit "$images" --threads "$threads" --weights "$w" --json >"$out.$w.json" \
        2>"$out.eval.err"; then
        grep -q 'no averaged parameters' "$out.eval.err" && continue   # trained with ema=0
        cat "$out.eval.err" >&2
        exit 1
    fi
    num() { sed -n "s/.*\"$1\": \([0-9.-]*\).*/\1/p" "$out.$w.json"; }
    echo "same_budget: $w weights, first $images test images: ELBO $(num elbo_bpd) bpd," \
        "KL $(num kl_bpd), aux $(num aux_bpd)"
done
echo "same_budget: end: $(state)"
