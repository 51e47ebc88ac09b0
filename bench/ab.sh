#!/bin/sh
# Compares train_step binaries (e.g. two builds of bench/train_step) on a
# machine whose speed drifts: runs them alternately, ROUNDS times each, and
# prints each binary's images/s per round on one line. Alternating puts every
# binary into the same fast and slow periods of the host
# (docs/performance.md, "This machine's noise").
#
# usage: bench/ab.sh ROUNDS CONFIG:BATCH BINARY... [-- train_step options]
#   e.g. cp build/bench/train_step /tmp/before; (change, make bench)
#        bench/ab.sh 3 fashion:16 /tmp/before build/bench/train_step -- --threads 2
set -eu
[ $# -ge 3 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1 cfg=$2
shift 2
bins="" opts="--threads 2 --repeats 8"
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; opts="$*"; break; fi
    bins="$bins $1"
    shift
done
i=0
while [ "$i" -lt "$rounds" ]; do
    for b in $bins; do
        # shellcheck disable=SC2086
        r=$("$b" $opts "$cfg" 2>&1 | tail -n 1 | sed -n 's/.*| *\([0-9.]*\) images\/s.*/\1/p')
        echo "$b ${r:-failed}"
    done
    i=$((i + 1))
done | awk '{ v[$1] = v[$1] " " $2; if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
            END { for (i = 0; i < n; i++) print order[i] ":" v[order[i]] }'
