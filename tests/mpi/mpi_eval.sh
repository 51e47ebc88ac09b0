#!/bin/sh
# agave-eval under mpirun (make check-mpi) against the plain agave-eval on the
# same checkpoint: 16 test images in batches of 5 (so that the ranks' slices
# are uneven and, for the last batch of 1 image, empty), IWAE with K = 3
# samples, on 2 and 3 ranks. Every image is scored with the z samples it gets
# in one process (agave_model_set_batch_slice), so the per-image figures are
# identical and only the order of the image-weighted sums (in double) differs:
# the JSON figures, printed with 6 decimals, must agree within 2e-6 (one unit
# of the last printed digit, for a sum that rounds the other way). Without the
# slices' skipping the z samples differ and the IWAE moves by about 1e-3.
# Also: --output is written by rank 0 and holds what it printed, and the
# --per-image CSV gathered from the ranks has every image's figures as one
# process has them (within 3e-6: the rows of a forward pass group the
# images differently, a float rounding of up to 1e-6 bpd, plus the printing).
#
# usage: tests/mpi/mpi_eval.sh   (run by make check-mpi from the top of the tree)
set -eu
. tests/mpi/common.inc

"$build/bin/agave-train" --config tiny --set dropout=0.5 --set T=1 --data "$data" --batch 8 \
    --threads 1 --steps 6 --out "$tmp/run" >/dev/null 2>"$tmp/train.err" ||
    { cat "$tmp/train.err" >&2; fail "training the model to evaluate failed"; }
eopts="--checkpoint $tmp/run/model.ckpt --data $data --samples 3 --batch 5 --threads 1 --json"
# shellcheck disable=SC2086
"$build/bin/agave-eval" $eopts --per-image "$tmp/one.csv" >"$tmp/one.json" 2>"$tmp/one.err" ||
    { cat "$tmp/one.err" >&2; fail "the one-process evaluation failed"; }

# Every "key": number pair of two JSON lines, within 2e-6.
same_json() { # a b what
    for f in "$1" "$2"; do
        tr -d '{}"' <"$f" | tr ',' '\n' | sed 's/^ *//' >"$f.kv"
    done
    paste -d: "$1.kv" "$2.kv" | awk -F: -v what="$3" '
        { if ($1 != $3) { print what ": key " $1 " against " $3; bad = 1; exit }
          d = $2 - $4; if (d < 0) d = -d
          if (d > 2e-6) { print what ": " $1 " " $2 " against " $4; bad = 1; exit } }
        END { exit bad }' || fail "$3: the figures differ"
}

# Two CSV tables: same header and index column, figures within 3e-6.
same_csv() { # a b what
    [ "$(wc -l <"$1")" -eq 17 ] || fail "$3: $1 does not have 16 rows"
    paste -d, "$1" "$2" | awk -F, -v what="$3" '
        NR == 1 { if ($0 != "index,name,elbo_bpd,recon_bpd,kl_bpd,aux_bpd,iwae_bpd," \
                          "index,name,elbo_bpd,recon_bpd,kl_bpd,aux_bpd,iwae_bpd") {
                      print what ": header " $0; bad = 1; exit }
                  next }
        { if ($1 != NR - 2 || $8 != $1) { print what ": row " NR ": " $0; bad = 1; exit }
          for (c = 3; c <= 7; c++) {
              d = $c - $(c + 7); if (d < 0) d = -d
              if (d > 3e-6 || $c == "") { print what ": row " NR ": " $0; bad = 1; exit } } }
        END { exit bad }' || fail "$3: the per-image figures differ"
}

for n in 2 3; do
    # shellcheck disable=SC2086
    run "$n" "$mbuild/bin/agave-eval" $eopts --output "$tmp/out$n.json" \
        --per-image "$tmp/r$n.csv" >"$tmp/r$n.json" 2>"$tmp/r$n.err" ||
        { cat "$tmp/r$n.err" >&2; fail "the $n-rank evaluation failed"; }
    [ "$(wc -l <"$tmp/r$n.json")" -eq 1 ] || fail "$n ranks: expected one JSON line on stdout"
    same_json "$tmp/one.json" "$tmp/r$n.json" "1 process against $n ranks"
    cmp -s "$tmp/r$n.json" "$tmp/out$n.json" || fail "$n ranks: --output differs from stdout"
    grep -q '"n_images": 16' "$tmp/r$n.json" || fail "$n ranks: not all 16 images counted"
    same_csv "$tmp/one.csv" "$tmp/r$n.csv" "1 process against $n ranks (--per-image)"
    echo "$test_name: $n ranks: $(cat "$tmp/r$n.json")"
done
echo "$test_name: 1 process:  $(cat "$tmp/one.json")"
echo "$test_name: all checks passed"
