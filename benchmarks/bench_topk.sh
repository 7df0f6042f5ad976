#!/bin/sh
# Top-k selection at memory speed (issue 20): the radix select and the sampled one
# (src/comm/topk.c) on a heavy-tailed 25 MB and 100 MB gradient at densities 0.1% and 1%, beside a
# memcpy of the same bytes and a sum of |x| (one read), all four interleaved in every repetition
# (pt-bench-compress --select). One process, OMP_NUM_THREADS=1 (what a rank gets in the 2 x 1
# runs) and 2. Medians, min and max of REPS (default 9).
# Writes benchmarks/out/topk.txt and benchmarks/out/topk.csv (one CSV for every run, with the
# CPU model, the ISA flags and the load average before the run in columns).
set -eu
cd "$(dirname "$0")/.."
OUT=benchmarks/out
mkdir -p "$OUT"
REPS=${REPS:-9}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
isa=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|amx_tile)$' | tr '\n' ' ')
csv=$OUT/topk.csv
txt=$OUT/topk.txt
echo "cpu,isa,threads,load_before,load_after,n,bytes,density,k,what,reps,median_ms,min_ms,max_ms" >"$csv"
{
    echo "# CPU: $cpu; flags: $isa; $(nproc) cores"
    for mb in 25 100; do
        for th in 1 2; do
            load0=$(cut -d' ' -f1 /proc/loadavg)
            tmp=$(mktemp)
            OMP_NUM_THREADS=$th timeout 300 ./pt-bench-compress --select --bytes $mb --reps "$REPS" \
                --csv "$tmp" 2>&1 | grep -v '^cpu:'
            load1=$(cut -d' ' -f1 /proc/loadavg)
            echo "#   ($th thread(s); load average $load0 before, $load1 after)"
            tail -n +2 "$tmp" | sed "s/^/\"$cpu\",$isa,$th,$load0,$load1,/" >>"$csv"
            rm -f "$tmp"
        done
    done
} | tee "$txt"
