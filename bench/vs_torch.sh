#!/bin/sh
# The library's training step against the same model in PyTorch, in the same
# run: for each round and each CONFIG:BATCH, bench/train_step in fp32, in
# bf16 (when the CPU has AVX-512 BF16) and bench/torch_step.py, one after the
# other, so that all three see the same fast and slow periods of the machine
# (docs/performance.md, "This machine's noise"). Prints each one's images/s
# per round, then the range over the rounds and the ratios to PyTorch.
#
# usage: bench/vs_torch.sh [-r ROUNDS] [-t THREADS] [-n REPEATS] [-c] [-l LOG] CONFIG:BATCH...
#   -r rounds (default 3), -t threads for both (default 2: OpenMP threads for
#   the library, whose OpenBLAS stays at 1; torch.set_num_threads for
#   PyTorch), -n timed steps per run (default 7), -c: process CPU time
#   instead of wall time (for 1 thread on a machine busy with other work),
#   -l: append every run's full line (GFLOP/s, peak RSS) to LOG
#   e.g. make bench && bench/vs_torch.sh -r 3 -t 2 fashion:16 fashion:32 cifar-small:16
# Needs python3-torch (sh scripts/deps.sh bench). Takes the bench lock
# (/work/coord/bench.lock when it exists) around each run.
set -eu
rounds=3 threads=2 repeats=7 cpu="" clock=wall log=/dev/null
while getopts r:t:n:cl: o; do
    case $o in
    r) rounds=$OPTARG ;;
    t) threads=$OPTARG ;;
    n) repeats=$OPTARG ;;
    c) cpu=--cpu-time clock="process CPU" ;;
    l) log=$OPTARG ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
step=$top/build/bench/train_step
[ -x "$step" ] || { echo "vs_torch.sh: build it first: make bench" >&2; exit 2; }
lock=/work/coord/bench.lock
locked() { if [ -e "$lock" ]; then flock "$lock" "$@"; else "$@"; fi; }
ips() { tee -a "$log" | sed -n 's/.*| *\([0-9.]*\) images\/s.*/\1/p' | tail -n 1; }
bf16=""
"$step" --threads 1 --repeats 1 --precision bf16 tiny:1 >/dev/null 2>&1 && bf16=yes

echo "threads $threads, $repeats timed steps per run, $clock time; $(uptime)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
i=0
while [ "$i" -lt "$rounds" ]; do
    for spec in "$@"; do
        # shellcheck disable=SC2086
        a=$(locked "$step" --threads "$threads" --repeats "$repeats" $cpu "$spec" | ips)
        b=-
        # shellcheck disable=SC2086
        [ -n "$bf16" ] && b=$(locked "$step" --threads "$threads" --repeats "$repeats" $cpu \
            --precision bf16 "$spec" | ips)
        # shellcheck disable=SC2086
        t=$(locked /usr/bin/python3 "$top/bench/torch_step.py" --threads "$threads" \
            --repeats "$repeats" $cpu "$spec" | ips)
        echo "$spec $a $b $t" | tee -a "$out"
    done
    i=$((i + 1))
done
echo "| config:batch | agave fp32 images/s | agave bf16 images/s | PyTorch images/s | fp32 / PyTorch | bf16 / PyTorch |"
echo "|---|---|---|---|---|---|"
awk '{ n[$1]++; if (!($1 in lo)) { order[k++] = $1; lo[$1] = hi[$1] = $2; blo[$1] = bhi[$1] = $3;
                                    tlo[$1] = thi[$1] = $4; rlo[$1] = rhi[$1] = $2 / $4;
                                    slo[$1] = shi[$1] = ($3 == "-" ? 0 : $3 / $4) }
       if ($2 < lo[$1]) lo[$1] = $2; if ($2 > hi[$1]) hi[$1] = $2;
       if ($3 != "-") { if ($3 < blo[$1]) blo[$1] = $3; if ($3 > bhi[$1]) bhi[$1] = $3;
                        r = $3 / $4; if (r < slo[$1]) slo[$1] = r; if (r > shi[$1]) shi[$1] = r }
       if ($4 < tlo[$1]) tlo[$1] = $4; if ($4 > thi[$1]) thi[$1] = $4;
       r = $2 / $4; if (r < rlo[$1]) rlo[$1] = r; if (r > rhi[$1]) rhi[$1] = r }
     END { for (j = 0; j < k; j++) { s = order[j];
           printf "| %s | %.1f-%.1f | %s | %.1f-%.1f | %.2f-%.2f | %s |\n", s, lo[s], hi[s],
                  (blo[s] == "-" ? "-" : sprintf("%.1f-%.1f", blo[s], bhi[s])), tlo[s], thi[s],
                  rlo[s], rhi[s], (blo[s] == "-" ? "-" : sprintf("%.2f-%.2f", slo[s], shi[s])) } }' "$out"
echo "end: $(uptime)"
