#!/bin/sh
# The paper's experiments (Lucas & Verbeek 2018) at CPU scale, on
# Fashion-MNIST with the fashion configuration and on CIFAR-10 with
# cifar-small (issue 9, docs/results.md).
# Every run is seeded, trains a fixed number of steps, and is then evaluated
# (ELBO with its decomposition and the VAE's bound on y, on --limit test
# images; IWAE with --samples K on the first --iwae-limit of them) and
# sampled (a sample grid and a reconstruction grid).
#
# usage: scripts/paper.sh [options] EXPERIMENT...
# experiments:
#   modes    mode naive (the degenerate hybrid) versus agave, and the
#            baselines vae (its bound on x: b = 256, s = 1) and pixelcnn
#   lambda   agave with lambda in 1 2 4 8 12 (the paper's Fig. 3 and 4)
#   aux      agave at lambda 2 with b in 256 64 32 16 (s = 1) and s in 1 2 4
#            (b = 256) (the paper's Fig. 5 and 6)
#   cifar    on CIFAR-10 with cifar-small (lambda 4): naive versus agave,
#            and the baselines pixelcnn and vae
#   long     the paper's central claim at a longer budget on Fashion-MNIST:
#            agave (lambda 2), naive and the unconditional pixelcnn, batch 32,
#            --long-steps steps each with the library's defaults, held-out
#            ELBO and KL every --long-eval-every steps in train.csv (plotted in
#            long-curves.png), IWAE K = --samples on --long-iwae-limit images
#   all      modes, lambda and aux (not cifar: it takes far longer)
#   plots    rebuild OUT/results.csv and the plots from the runs present
#   curves   only OUT/long-curves.png, from OUT/runs/long-*/train.csv (runs
#            made elsewhere can be linked there)
#   publish  merge OUT/results.csv into docs/results/results.csv (rows of runs
#            not in OUT are kept), copy the grids (and the cifar runs'
#            train.csv), redraw the plots there
#   list     print every run's name and settings
# options (defaults in brackets):
#   --steps N        training steps per run [3000]
#   --batch B        [16]
#   --seed S         seed of every run [1]
#   --jobs J         runs at once, each on --threads threads [1]
#   --threads T      [the number of online CPUs / J]
#   --limit N        test images for the ELBO [1000]
#   --samples K      IWAE importance samples [150]
#   --iwae-limit N   test images for the IWAE bound [200]
#   --data PATH      [/usr/share/datasets/fashion-mnist]
#   --cifar-data PATH  CIFAR-10 batches [../shared/data/cifar10 beside the project]
#   --cifar-steps N  training steps of the cifar runs [1000]
#   --long-steps N   training steps of the long runs [3300: about 60 minutes
#                    of one idle core at batch 32]
#   --long-eval-every N  held-out evaluation interval of the long runs [250]
#   --long-iwae-limit N  test images of the long runs' ELBO and IWAE [500]
#   --out DIR        [results/paper]
# A run whose eval.json exists is skipped; an interrupted one resumes from its
# checkpoint. A run's directory holds model.ckpt, train.csv, train.log,
# eval.json, iwae.json, samples.png and recon.png.
# Needs the programs built (make) and `scripts/deps.sh paper` (gnuplot-nox
# and dataset-fashion-mnist).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${AGAVE_BIN:-$top/build/bin}
steps=3000 batch=16 seed=1 jobs=1 threads="" limit=1000 samples=150 iwae_limit=200
data=/usr/share/datasets/fashion-mnist
cifar_data=$top/../shared/data/cifar10 cifar_steps=1000
long_steps=3300 long_eval_every=250 long_iwae_limit=500
out=results/paper

say() { echo "paper: $*" >&2; }
die() { say "$*"; exit 2; }

# ---- the runs: name and the --set options of each ---------------------------------
runs_modes="naive agave-l2 vae pixelcnn"
runs_lambda="agave-l1 agave-l2 agave-l4 agave-l8 agave-l12"
runs_aux="agave-l2 agave-b64 agave-b32 agave-b16 agave-s2 agave-s4"
runs_cifar="cifar-naive cifar-agave cifar-pixelcnn cifar-vae"
runs_long="long-agave long-naive long-pixelcnn"

settings() { # name -> key=value words
    case $1 in
    naive) echo "mode=naive lambda=2" ;;
    vae) echo "mode=vae lambda=1" ;;
    pixelcnn) echo "mode=pixelcnn" ;;
    agave-l*) echo "mode=agave lambda=${1#agave-l}" ;;
    agave-b*) echo "mode=agave lambda=2 b=${1#agave-b}" ;;
    agave-s*) echo "mode=agave lambda=2 s=${1#agave-s}" ;;
    cifar-naive) echo "mode=naive lambda=4" ;;
    cifar-agave) echo "mode=agave lambda=4" ;;
    cifar-*) settings "${1#cifar-}" ;;
    long-agave) echo "mode=agave lambda=2" ;;
    long-*) settings "${1#long-}" ;;
    *) return 1 ;;
    esac
}

# ---- one run: train, evaluate, sample ----------------------------------------------
run_one() { # name
    name=$1
    dir=$out/runs/$name
    config=fashion run_data=$data run_steps=$steps run_batch=$batch watch="" run_iwae=$iwae_limit
    case $name in
    cifar-*) config=cifar-small run_data=$cifar_data run_steps=$cifar_steps ;;
    long-*)
        run_steps=$long_steps run_batch=32 run_iwae=$long_iwae_limit
        watch="--eval-every $long_eval_every --eval-images $long_iwae_limit --log-every 50"
        ;;
    esac
    sets=""
    for kv in $(settings "$name"); do sets="$sets --set $kv"; done
    if [ -s "$dir/eval.json" ] && [ -s "$dir/iwae.json" ]; then
        say "$name: done already ($dir)"
        return 0
    fi
    mkdir -p "$dir"
    if [ -s "$dir/model.ckpt" ]; then
        how="--resume"
    else
        # shellcheck disable=SC2086
        how="--config $config $sets --seed $seed --batch $run_batch"
    fi
    say "$name: training $config to step $run_steps ($(settings "$name"))"
    # shellcheck disable=SC2086
    "$bin/agave-train" $how --data "$run_data" --out "$dir" --steps "$run_steps" --threads "$threads" \
        --checkpoint-every 500 $watch >>"$dir/train.log" 2>&1 ||
        die "$name: agave-train failed (exit $?); see $dir/train.log"
    say "$name: evaluating"
    "$bin/agave-eval" --checkpoint "$dir/model.ckpt" --data "$run_data" --limit "$limit" \
        --samples 0 --json --output "$dir/eval.json" --threads "$threads" >/dev/null \
        2>>"$dir/train.log" || die "$name: agave-eval failed; see $dir/train.log"
    "$bin/agave-eval" --checkpoint "$dir/model.ckpt" --data "$run_data" --limit "$run_iwae" \
        --samples "$samples" --json --output "$dir/iwae.json" --threads "$threads" >/dev/null \
        2>>"$dir/train.log" || die "$name: agave-eval --samples $samples failed"
    say "$name: sampling"
    "$bin/agave-sample" --checkpoint "$dir/model.ckpt" --count 16 --seed 1 \
        --out "$dir/samples.png" --threads "$threads" 2>>"$dir/train.log" ||
        die "$name: agave-sample failed"
    if [ "${name#*-}" != pixelcnn ] && [ "$name" != pixelcnn ]; then   # (no latent code)
        "$bin/agave-sample" --checkpoint "$dir/model.ckpt" --reconstruct --data "$run_data" \
            --count 8 --seed 1 --out "$dir/recon.png" --threads "$threads" \
            2>>"$dir/train.log" || die "$name: agave-sample --reconstruct failed"
    fi
    say "$name: $(cat "$dir/eval.json")"
}

# ---- results.csv and plots -------------------------------------------------------------
json_num() { # file key
    sed -n "s/.*\"$2\": *\\([-0-9.eE+]*\\).*/\\1/p" "$1" | head -n 1
}

collect() {
    csv=$out/results.csv
    echo "name,mode,lambda,b,s,steps,elbo_bpd,recon_bpd,kl_bpd,aux_bpd,iwae_bpd,iwae_samples,baseline_bpd,images,iwae_images,iwae_images_elbo_bpd,config" >"$csv"
    for dir in "$out"/runs/*/; do
        name=$(basename "$dir")
        [ -s "$dir/eval.json" ] && [ -s "$dir/iwae.json" ] || continue
        mode=agave lambda=2 b=256 s=1
        for kv in $(settings "$name"); do
            eval "${kv%%=*}=${kv#*=}"
        done
        [ "$mode" = pixelcnn ] && lambda=0
        config=fashion
        case $name in cifar-*) config=cifar-small ;; esac
        trained=$(tail -n 1 "$dir/train.csv" | cut -d, -f1)
        e=$dir/eval.json i=$dir/iwae.json
        echo "$name,$mode,$lambda,$b,$s,$trained,$(json_num "$e" elbo_bpd),$(json_num "$e" recon_bpd),$(json_num "$e" kl_bpd),$(json_num "$e" aux_bpd),$(json_num "$i" iwae_bpd),$(json_num "$i" iwae_samples),$(json_num "$e" baseline_bpd),$(json_num "$e" n_images),$(json_num "$i" n_images),$(json_num "$i" elbo_bpd),$config" >>"$csv"
    done
    say "wrote $csv ($(($(wc -l <"$csv") - 1)) runs)"
}

plots() {
    collect
    plot_from "$out/results.csv" "$out"
    plot_long "$out"
}

# A clustered bar chart of bits per dimension into PNG, SIZE "w,h", TITLE:
# the shared gnuplot settings, then the chart's own (key, ranges, the plot
# command) from standard input.
bars() { # png size title
    {
        cat <<EOF
set terminal pngcairo size $2 noenhanced
set output '$1'
set datafile separator ','
set title '$3'
set ylabel 'bits per dimension'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
EOF
        cat
    } | gnuplot
    say "wrote $1"
}

# The plots of the runs in CSV, written into DIR (with their .dat files).
plot_from() { # csv dir
    csv=$1
    pdir=$2
    command -v gnuplot >/dev/null 2>&1 || die "gnuplot is missing: scripts/deps.sh paper"
    # lambda: the agave-l* rows, sorted by lambda.
    grep '^agave-l' "$csv" | sort -t, -k3 -g >"$pdir/lambda.dat" || true
    if [ -s "$pdir/lambda.dat" ]; then
        gnuplot <<EOF
set terminal pngcairo size 900,560 noenhanced
set output '$pdir/lambda.png'
set datafile separator ','
set multiplot layout 1,2 title 'AGAVE on Fashion-MNIST against lambda (KL weight)'
set xlabel 'lambda'
set logscale x 2
set xtics (1, 2, 4, 8, 12)
set grid
set key below
set title 'bounds on x (bits per dimension)'
plot '$pdir/lambda.dat' using 3:7 with linespoints lw 2 title 'ELBO', \
     '' using 3:8 with linespoints lw 2 title 'PixelCNN reconstruction', \
     '' using 3:16 with linespoints lw 2 dt 2 title 'ELBO, first 50 images', \
     '' using 3:11 with linespoints lw 2 dt 2 title 'IWAE K=150, first 50'
set key below
set title 'the latent code (bits per dimension)'
set y2tics
set ylabel 'KL'
set y2label 'VAE bound on y'
plot '$pdir/lambda.dat' using 3:9 with linespoints lw 2 title 'KL', \
     '' using 3:10 axes x1y2 with linespoints lw 2 title 'VAE bound on y (right)'
unset multiplot
EOF
        say "wrote $pdir/lambda.png"
    fi
    # modes: the degenerate hybrid, AGAVE and the baselines at equal budget.
    grep -E '^(naive|agave-l2|vae|pixelcnn),' "$csv" >"$pdir/modes.dat" || true
    if [ -s "$pdir/modes.dat" ]; then
        bars "$pdir/modes.png" 800,500 \
            'Fashion-MNIST at equal budget (bits per dimension; KL in results.csv)' <<EOF
set key outside right
set yrange [3:4.7]
plot '$pdir/modes.dat' using 7:xtic(1) title 'ELBO, 1000 images', \
     '' using 16 title 'ELBO, first 50', '' using 11 title 'IWAE K=150, first 50', \
     '' using 13 title 'per-pixel histogram, 1000'
EOF
    fi
    # aux: b at s = 1 and s at b = 256 (lambda 2), as clustered bars.
    grep -E '^agave-(l2|b[0-9]+|s[0-9]+),' "$csv" | sort -t, -k5,5n -k4,4nr >"$pdir/aux.dat" || true
    if [ -s "$pdir/aux.dat" ]; then
        bars "$pdir/aux.png" 900,560 \
            'AGAVE, lambda 2: the auxiliary image y (b colour levels, s x s pooling)' <<EOF
set key below
set xtics rotate by -20
plot '$pdir/aux.dat' using 7:xtic(sprintf('b=%s s=%s', strcol(4), strcol(5))) title 'ELBO on x', \
     '' using 8 title 'PixelCNN reconstruction', '' using 10 title 'VAE bound on y (per dimension of y)'
EOF
    fi
    # cifar: the cifar-small runs on CIFAR-10, as the modes plot.
    grep -E '^cifar-' "$csv" >"$pdir/cifar.dat" || true
    if [ -s "$pdir/cifar.dat" ]; then
        bars "$pdir/cifar.png" 800,500 'CIFAR-10, cifar-small, equal budget (KL: results.csv)' <<EOF
set key outside right
set yrange [0:*]
plot '$pdir/cifar.dat' using 7:xtic(1) title 'ELBO', \
     '' using 16 title 'ELBO, IWAE images', '' using 11 title 'IWAE K=150', \
     '' using 13 title 'per-pixel histogram'
EOF
    fi
    # cifar-kl: the training KL and auxiliary term of naive and agave, step by step
    # (train.csv: the running training values, not an evaluation).
    na=$pdir/cifar-naive-train.csv ag=$pdir/cifar-agave-train.csv
    [ -s "$na" ] || na=$out/runs/cifar-naive/train.csv
    [ -s "$ag" ] || ag=$out/runs/cifar-agave/train.csv
    if [ -s "$na" ] && [ -s "$ag" ]; then
        gnuplot <<EOF
set terminal pngcairo size 900,500 noenhanced
set output '$pdir/cifar-kl.png'
set datafile separator ','
set key autotitle columnhead
set title 'CIFAR-10, cifar-small: the latent code during training (training batches)'
set xlabel 'step'
set ylabel 'KL (bits per dimension)'
set y2label 'auxiliary term, agave (bits per dimension of y)'
set y2tics
set grid
set key below
plot '$na' using 1:6 with lines lw 2 title 'KL, naive', \
     '$ag' using 1:6 with lines lw 2 title 'KL, agave (lambda 4)', \
     '$ag' using 1:5 axes x1y2 with lines lw 2 dt 2 title 'auxiliary term, agave (right)'
EOF
        say "wrote $pdir/cifar-kl.png"
    fi
}

# long-curves.png: the held-out ELBO and KL of the long runs against the step
# (train.csv's test_* columns, written by agave-train --eval-every).
plot_long() { # the plot's directory (its long-NAME-train.csv, else OUT/runs/NAME/train.csv)
    pdir=$1
    for name in $runs_long; do
        f=$pdir/$name-train.csv
        [ -s "$f" ] || f=$out/runs/$name/train.csv
        [ -s "$f" ] || continue
        awk -F, 'NR > 1 && $7 != "" { print $1 "," $7 "," $8 "," $10 }' "$f" >"$pdir/$name-curve.dat"
    done
    ls "$pdir"/long-*-curve.dat >/dev/null 2>&1 || return 0
    lines_elbo="" lines_kl=""
    for name in $runs_long; do
        d=$pdir/$name-curve.dat
        [ -s "$d" ] || continue
        lines_elbo="$lines_elbo${lines_elbo:+, }'$d' using 1:2 with linespoints lw 2 title '${name#long-}'"
        lines_kl="$lines_kl${lines_kl:+, }'$d' using 1:3 with linespoints lw 2 title '${name#long-}'"
    done
    gnuplot <<EOF
set terminal pngcairo size 1000,480 noenhanced
set output '$pdir/long-curves.png'
set datafile separator ','
set multiplot layout 1,2 title 'Fashion-MNIST, batch 32: held-out ELBO and KL during training (first $long_iwae_limit test images)'
set xlabel 'step'
set grid
set key top right
set title 'ELBO (bits per dimension)'
plot $lines_elbo
set title 'KL (bits per dimension)'
set key top left
plot $lines_kl
unset multiplot
EOF
    rm -f "$pdir"/long-*-curve.dat
    say "wrote $pdir/long-curves.png"
}

# docs/results/results.csv keeps the rows of published runs that are not in
# OUT (a sweep rerun elsewhere, or only in part), so publishing the cifar runs
# does not drop the Fashion-MNIST ones; the plots are redrawn from the merged
# table.
publish() {
    collect
    dest=$top/docs/results
    mkdir -p "$dest"
    merged=$out/published.csv
    tail -n +2 "$out/results.csv" >"$merged.rows"
    if [ -s "$dest/results.csv" ]; then
        tail -n +2 "$dest/results.csv" | while IFS= read -r row; do
            grep -q "^${row%%,*}," "$out/results.csv" && continue
            # rows without the config column (older tables) are Fashion-MNIST runs
            if [ "$(printf '%s' "$row" | tr -cd , | wc -c)" -eq 15 ]; then
                echo "$row,fashion"
            else
                echo "$row"
            fi
        done >>"$merged.rows"
    fi
    { head -n 1 "$out/results.csv"; sort "$merged.rows"; } >"$merged"
    rm -f "$merged.rows"
    cp "$merged" "$dest/results.csv"
    for dir in "$out"/runs/*/; do
        [ -d "$dir" ] || continue
        name=$(basename "$dir")
        for g in samples recon; do
            [ -s "$dir/$g.png" ] && cp "$dir/$g.png" "$dest/$name-$g.png"
        done
        case $name in cifar-* | long-*) cp "$dir/train.csv" "$dest/$name-train.csv" ;; esac
    done
    plot_from "$dest/results.csv" "$dest"
    plot_long "$dest"
    rm -f "$dest"/*.dat
    say "merged into $dest/results.csv ($(($(wc -l <"$dest/results.csv") - 1)) runs); plots redrawn, grids copied"
}

# ---- command line ----------------------------------------------------------------------------
todo=""
while [ $# -gt 0 ]; do
    case $1 in
    --steps) steps=$2; shift ;;
    --batch) batch=$2; shift ;;
    --seed) seed=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --threads) threads=$2; shift ;;
    --limit) limit=$2; shift ;;
    --samples) samples=$2; shift ;;
    --iwae-limit) iwae_limit=$2; shift ;;
    --data) data=$2; shift ;;
    --cifar-data) cifar_data=$2; shift ;;
    --cifar-steps) cifar_steps=$2; shift ;;
    --long-steps) long_steps=$2; shift ;;
    --long-eval-every) long_eval_every=$2; shift ;;
    --long-iwae-limit) long_iwae_limit=$2; shift ;;
    --out) out=$2; shift ;;
    --run-one) todo="$todo _one:$2"; shift ;;   # internal: one run (for --jobs)
    -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    modes | lambda | aux | cifar | long | all | plots | curves | publish | list) todo="$todo $1" ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[ -n "$todo" ] || die "name an experiment: modes, lambda, aux, all, plots, publish or list"
[ -n "$threads" ] || threads=$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))
for p in agave-train agave-eval agave-sample; do
    [ -x "$bin/$p" ] || die "$bin/$p is missing: run make first"
done

names=""
for t in $todo; do
    case $t in
    _one:*) run_one "${t#_one:}"; exit 0 ;;
    modes) names="$names $runs_modes" ;;
    lambda) names="$names $runs_lambda" ;;
    aux) names="$names $runs_aux" ;;
    cifar) names="$names $runs_cifar" ;;
    long) names="$names $runs_long" ;;
    all) names="$names $runs_modes $runs_lambda $runs_aux" ;;
    list) for n in $runs_modes $runs_lambda $runs_aux $runs_cifar $runs_long; do echo "$n: $(settings "$n")"; done | sort -u ;;
    esac
done
# Each run once, in order of first mention.
unique=""
for n in $names; do
    case " $unique " in *" $n "*) ;; *) unique="$unique $n" ;; esac
done
if [ -n "$unique" ]; then
    case $unique in *" cifar-"*)
        [ -e "$cifar_data" ] || die "$cifar_data does not exist (give --cifar-data)" ;;
    esac
    case $unique in *" "[!c]*)
        [ -e "$data" ] || die "$data does not exist (scripts/deps.sh paper installs Fashion-MNIST)" ;;
    esac
    mkdir -p "$out"
    say "runs:$unique; $steps steps (cifar: $cifar_steps) at batch $batch, seed $seed, $jobs at once on $threads thread(s) each"
    common="--steps $steps --batch $batch --seed $seed --threads $threads --limit $limit"
    common="$common --samples $samples --iwae-limit $iwae_limit --data $data --out $out"
    common="$common --cifar-data $cifar_data --cifar-steps $cifar_steps --long-steps $long_steps"
    common="$common --long-eval-every $long_eval_every --long-iwae-limit $long_iwae_limit"
    # shellcheck disable=SC2086
    printf '%s\n' $unique | xargs -P "$jobs" -I NAME sh "$0" $common --run-one NAME
fi
for t in $todo; do
    case $t in
    plots) plots ;;
    curves) plot_long "$out" ;;
    publish) publish ;;
    esac
done
if [ -n "$unique" ]; then plots; fi
