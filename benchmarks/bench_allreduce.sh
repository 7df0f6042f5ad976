#!/bin/sh
# Allreduce algorithms next to MPI_Allreduce (pt-bench-allreduce: OSU rules, nccl-tests busbw):
#   np=2 out of place, every algorithm and auto, 4 B .. 256 MiB
#   np=2 in place on a shared-memory buffer (what training does with --allreduce auto)
#   np=4 and np=8 on 2 cores: OVERSUBSCRIBED, for the shape of the curves only
# Writes benchmarks/out/allreduce_*.{txt,csv} and, with gnuplot, allreduce_np2.png.
#   benchmarks/bench_allreduce.sh        (about 3 minutes)
set -eu
cd "$(dirname "$0")/.."
OUT=benchmarks/out
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
ALL=mpi,auto,ring,recursive_doubling,rabenseifner,binomial,hierarchical
mpirun -np 2 ./pt-bench-allreduce --algos $ALL --max-bytes 256M --check \
    --csv $OUT/allreduce_np2.csv >$OUT/allreduce_np2.txt
mpirun -np 2 ./pt-bench-allreduce --algos mpi,auto,hierarchical --max-bytes 256M --shared --check \
    --csv $OUT/allreduce_np2_shared.csv >$OUT/allreduce_np2_shared.txt
for np in 4 8; do
    mpirun -np $np --oversubscribe ./pt-bench-allreduce --algos mpi,auto,ring,rabenseifner,hierarchical \
        --max-bytes 64M --csv $OUT/allreduce_np${np}_oversubscribed.csv >$OUT/allreduce_np${np}_oversubscribed.txt
done
cat $OUT/allreduce_np2.txt $OUT/allreduce_np2_shared.txt
if command -v gnuplot >/dev/null; then
    for f in allreduce_np2 allreduce_np2_shared; do
        gnuplot <<GP
set terminal png size 1100,450 noenhanced
set output "$OUT/$f.png"
set datafile separator ","
set multiplot layout 1,2 title "$f: pt-bench-allreduce (float32 sum)"
set logscale xy
set xlabel "message size (bytes)"
set ylabel "latency (us)"
set key left top
plot for [a in "mpi auto ring recursive_doubling rabenseifner binomial hierarchical"] \
    "$OUT/$f.csv" using (strcol(3) eq a ? \$2 : 1/0):5 with linespoints title a
set ylabel "busbw (GB/s)"
unset logscale y
plot for [a in "mpi auto ring recursive_doubling rabenseifner binomial hierarchical"] \
    "$OUT/$f.csv" using (strcol(3) eq a ? \$2 : 1/0):9 with linespoints title a
unset multiplot
GP
    done
    mkdir -p benchmarks/figures && cp $OUT/allreduce_np2.png $OUT/allreduce_np2_shared.png benchmarks/figures/
    echo "figures: benchmarks/figures/allreduce_np2.png benchmarks/figures/allreduce_np2_shared.png"
fi
