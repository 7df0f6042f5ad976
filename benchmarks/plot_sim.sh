#!/bin/sh
# The simulated-allreduce figures from benchmarks/figures/sim_allreduce.csv (a copy of
# benchmarks/out/sim/sim_allreduce.csv, made by benchmarks/bench_sim.sh): PNG and SVG into
# benchmarks/figures/. `make figures` runs this.
#   sim_allreduce_time.{png,svg}   simulated time against simulated ranks, 4 MiB, crossbar
#   sim_allreduce_ratio.{png,svg}  simulated / alpha-beta formula, every run
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
fig=$top/benchmarks/figures
csv=$fig/sim_allreduce.csv
command -v gnuplot >/dev/null || { echo "plot_sim: no gnuplot (scripts/install-deps.sh --bench)" >&2; exit 0; }
[ -f "$csv" ] || { echo "plot_sim: no $csv (run benchmarks/bench_sim.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# columns: platform,ranks_per_node,p,algo,bytes,sim_s,formula_s,ratio,...
algos=$(awk -F, 'NR > 1 && $1 == "crossbar" && $5 == 4194304 { print $4 }' "$csv" | sort -u)
plot="" i=0
for a in $algos; do
    awk -F, -v a="$a" 'NR > 1 && $1 == "crossbar" && $5 == 4194304 && $4 == a { print $3, $6 * 1e6 }' "$csv" |
        sort -n >"$tmp/$a.dat"
    plot="$plot${plot:+, }'$tmp/$a.dat' using 1:2 with linespoints title '$a'"
done
awk -F, 'NR > 1 && $8 != "" { print NR, $8, $1 "/" $3 "/" $4 "/" $5 }' "$csv" >"$tmp/ratio.dat"
for term in "pngcairo size 900,600" "svg size 900,600"; do
    ext=${term%% *}; ext=${ext%cairo}
    gnuplot <<GP
set terminal $term noenhanced
set output '$fig/sim_allreduce_time.$ext'
set title "Simulated allreduce of 4 MiB, crossbar (alpha 1 us, 12.5 GB/s), 1 rank/node\nbenchmarks/bench_sim.sh; data benchmarks/figures/sim_allreduce.csv"
set logscale xy
set xlabel 'simulated ranks'
set ylabel 'time (us)'
set key outside right
plot $plot
set output '$fig/sim_allreduce_ratio.$ext'
unset logscale
set logscale y
set title "Simulated time / the algorithm's alpha-beta formula, every run\nbenchmarks/bench_sim.sh + sim/formula.py; data benchmarks/figures/sim_allreduce.csv"
set xlabel 'run (row of the CSV)'
set ylabel 'simulated / formula'
set yrange [0.3:20]
unset key
plot '$tmp/ratio.dat' using 1:2 with points pt 7, 1.1 with lines lt 0, 0.9 with lines lt 0
GP
done
echo "plot_sim: $fig/sim_allreduce_time.png $fig/sim_allreduce_ratio.png (+ .svg)"
