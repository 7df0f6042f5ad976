#!/bin/sh
# The pipeline figures (issue 18) from the CSVs benchmarks/bench_pipeline.sh writes (copies in
# benchmarks/figures/): the step timeline of GPipe, 1F1B and interleaved 1F1B at pp 2, M = 8
# (pipeline_timeline_SCHEDULE.csv: the last traced step of each, the spans of `--trace`), and
# the bubble and stage 0's activation bytes against M (pipeline_bubble.csv), PNG and SVG into
# benchmarks/figures/. `make figures` runs this.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
fig=$top/benchmarks/figures
command -v gnuplot >/dev/null || { echo "plot_pipeline: no gnuplot (scripts/install-deps.sh --bench)" >&2; exit 0; }
for f in pipeline_bubble.csv pipeline_timeline_gpipe.csv pipeline_timeline_1f1b.csv pipeline_timeline_interleaved.csv; do
    [ -f "$fig/$f" ] || { echo "plot_pipeline: no $fig/$f (run benchmarks/bench_pipeline.sh, copy from benchmarks/out)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Timeline: one box per span, x = time in the step (ms), y = the stage; forward, backward and
# the waits of the transfers in their own colours (columns: rank,name,cat,mb,chunk,start_ms,dur_ms)
for s in gpipe 1f1b interleaved; do
    awk -F, -v d="$tmp/$s" 'NR > 1 {
        k = ($3 == "compute") ? (substr($2, 1, 1) == "F" ? "fwd" : "bwd") : "comm"
        x = $6 + $7 / 2; h = (k == "comm") ? 0.15 : 0.38
        printf "%.4f %d %.4f %.2f %s\n", x, $1, $7 / 2, h, (k == "comm" ? "" : $4) >> (d "." k)
    }' "$fig/pipeline_timeline_$s.csv"
    for k in fwd bwd comm; do [ -f "$tmp/$s.$k" ] || echo "0 0 0 0 x" >"$tmp/$s.$k"; done
done
# Bubble and memory against M (columns: schedule,M,bubble,bub_step,formula,act_bytes_s0)
for s in gpipe 1f1b interleaved; do
    awk -F, -v s="$s" 'NR > 1 && $1 == s { print $2, $4, $5, $6 / 1048576 }' "$fig/pipeline_bubble.csv" | sort -n >"$tmp/b.$s"
done
for term in "pngcairo size 1200,700" "svg size 1200,700"; do
    ext=${term%% *}; ext=${ext%cairo}
    gnuplot <<GP
set terminal $term noenhanced
set output '$fig/pipeline_timeline.$ext'
set multiplot layout 3,1 title "gpt pp 2, M = 8: one step per schedule (forward blue, backward red, waits for transfers grey)\nbenchmarks/bench_pipeline.sh; data benchmarks/figures/pipeline_timeline_*.csv"
set ytics ("stage 0" 0, "stage 1" 1)
set yrange [1.6:-0.6]
set xlabel 'time in the step (ms)'
set style fill solid 0.85 border lc rgb 'white'
set grid x
unset key
do for [s in "gpipe 1f1b interleaved"] {
    set title s
    plot '$tmp/'.s.'.fwd' using 1:2:3:4 with boxxyerror lc rgb '#3465a4', \
         '$tmp/'.s.'.bwd' using 1:2:3:4 with boxxyerror lc rgb '#cc0000', \
         '$tmp/'.s.'.comm' using 1:2:3:4 with boxxyerror lc rgb '#888a85', \
         '$tmp/'.s.'.fwd' using 1:2:5 with labels tc rgb 'white' font ',8', \
         '$tmp/'.s.'.bwd' using 1:2:5 with labels tc rgb 'white' font ',8'
}
unset multiplot
unset title
set output '$fig/pipeline_bubble.$ext'
set multiplot layout 1,2 title "gpt pp 2: bubble and stage 0's activation memory against micro-batches\nbenchmarks/bench_pipeline.sh; data benchmarks/figures/pipeline_bubble.csv"
set yrange [*:*]
set ytics auto
set logscale x 2
set xlabel 'micro-batches M'
set ylabel 'idle fraction of the step'
set key top right
set grid
plot '$tmp/b.gpipe' using 1:2 with linespoints lc rgb '#3465a4' title 'gpipe measured', \
     '$tmp/b.gpipe' using 1:3 with lines dt 2 lc rgb '#3465a4' title '(p-1)/(m+p-1)', \
     '$tmp/b.1f1b' using 1:2 with linespoints lc rgb '#cc0000' title '1f1b measured', \
     '$tmp/b.interleaved' using 1:2 with linespoints lc rgb '#4e9a06' title 'interleaved (V=2) measured', \
     '$tmp/b.interleaved' using 1:3 with lines dt 2 lc rgb '#4e9a06' title '(p-1)/(V m)'
set ylabel "stage 0's activation MiB"
set logscale y 2
plot '$tmp/b.gpipe' using 1:4 with linespoints lc rgb '#3465a4' title 'gpipe', \
     '$tmp/b.1f1b' using 1:4 with linespoints lc rgb '#cc0000' title '1f1b', \
     '$tmp/b.interleaved' using 1:4 with linespoints lc rgb '#4e9a06' title 'interleaved'
unset multiplot
GP
done
echo "plot_pipeline: $fig/pipeline_timeline.png, $fig/pipeline_bubble.png (+ .svg)"
