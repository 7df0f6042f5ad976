#!/bin/sh
# The parameter-server figure from benchmarks/figures/ps_ssp_tta.csv (a copy of
# benchmarks/out/ps_ssp_tta.csv, made by benchmarks/bench_ps_ssp.sh): test accuracy against
# wall-clock time and against steps for BSP, SSP (s = 3) and ASP with an intermittent 4x
# straggler, PNG and SVG into benchmarks/figures/. `make figures` runs this.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
fig=$top/benchmarks/figures
csv=$fig/ps_ssp_tta.csv
command -v gnuplot >/dev/null || { echo "plot_ps: no gnuplot (scripts/install-deps.sh --bench)" >&2; exit 0; }
[ -f "$csv" ] || { echo "plot_ps: no $csv (run benchmarks/bench_ps_ssp.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# columns: sync,steps,wall_s,test_accuracy,samples_per_s,staleness_max
wall="" steps=""
for s in $(awk -F, 'NR > 1 { print $1 }' "$csv" | sort -u); do
    f=$tmp/$(echo "$s" | tr : _).dat
    awk -F, -v s="$s" 'NR > 1 && $1 == s { print $2, $3, $4 }' "$csv" | sort -n >"$f"
    wall="$wall${wall:+, }'$f' using 2:3 with linespoints title '$s'"
    steps="$steps${steps:+, }'$f' using 1:3 with linespoints title '$s'"
done
for term in "pngcairo size 1100,450" "svg size 1100,450"; do
    ext=${term%% *}; ext=${ext%cairo}
    gnuplot <<GP
set terminal $term noenhanced
set output '$fig/ps_ssp_accuracy.$ext'
set multiplot layout 1,2 title "Parameter server, 1 server + 3 workers, one worker 4x slow in turn\nbenchmarks/bench_ps_ssp.sh; data benchmarks/figures/ps_ssp_tta.csv"
set xlabel 'wall-clock training time (s)'
set ylabel 'test accuracy'
set key bottom right
set grid
plot $wall, 0.85 with lines lt 0 title '85%'
set xlabel 'steps (pushes / 3 workers)'
plot $steps, 0.85 with lines lt 0 title '85%'
unset multiplot
GP
done
echo "plot_ps: $fig/ps_ssp_accuracy.png (+ .svg)"
