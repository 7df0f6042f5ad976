#!/bin/sh
# The capped-link figure from benchmarks/figures/capped_tta.csv (a copy of
# benchmarks/out/capped_tta.csv, made by benchmarks/bench_capped_link.sh tta): Fashion-MNIST mlp
# at 2 ranks on two network-namespace nodes, validation accuracy against the training time
# (evaluation excluded) and against the gradient bytes each rank sent, one row of plots per link
# cap, one line per compression method; PNG and SVG into benchmarks/figures/. `make figures` runs
# this.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
fig=$top/benchmarks/figures
csv=$fig/capped_tta.csv
command -v gnuplot >/dev/null || { echo "plot_capped: no gnuplot (scripts/install-deps.sh --bench)" >&2; exit 0; }
[ -f "$csv" ] || { echo "plot_capped: no $csv (run benchmarks/bench_capped_link.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# columns: cap,method,step,train_s,bytes_sent_per_rank,val_accuracy
caps=$(awk -F, 'NR > 1 && !seen[$1]++ { print $1 }' "$csv")
ncaps=$(echo "$caps" | wc -w)
[ "$ncaps" -gt 0 ] || { echo "plot_capped: $csv has no rows" >&2; exit 1; }
body=""
for c in $caps; do
    wall="" bytes=""
    for m in $(awk -F, -v c="$c" 'NR > 1 && $1 == c && !seen[$2]++ { print $2 }' "$csv"); do
        f=$tmp/$c-$m.dat
        awk -F, -v c="$c" -v m="$m" 'NR > 1 && $1 == c && $2 == m { print $3, $4, $5 / 1e6, 100 * $6 }' "$csv" |
            sort -n >"$f"
        wall="$wall${wall:+, }'$f' using 2:4 with linespoints title '$m'"
        bytes="$bytes${bytes:+, }'$f' using 3:4 with linespoints title '$m'"
    done
    label=$c
    [ "$c" = none ] && label="uncapped veth"
    body="$body
unset logscale x
set xlabel 'training time (s, evaluation excluded), link $label'
plot $wall
set logscale x
set xlabel 'gradient bytes sent per rank (MB, log), link $label'
plot $bytes"
done
h=$((330 * ncaps + 60))
for term in "pngcairo size 1100,$h" "svg size 1100,$h"; do
    ext=${term%% *}; ext=${ext%cairo}
    gnuplot <<GP
set terminal $term noenhanced font ",10"
set output '$fig/capped_accuracy.$ext'
set multiplot layout $ncaps,2 title "mlp:784-1024-1024-10 on Fashion-MNIST, 2 ranks on two namespace nodes over TCP, tc tbf cap on the veth\nbenchmarks/bench_capped_link.sh tta; data benchmarks/figures/capped_tta.csv"
set ylabel 'validation accuracy (%)'
set key bottom right
set grid
$body
unset multiplot
GP
done
echo "plot_capped: $fig/capped_accuracy.png (+ .svg)"
