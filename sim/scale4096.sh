#!/bin/sh
# sim/scale4096.sh OUTDIR ALGO TIMEOUT_S [P] [BYTES]: one pt-sim-allreduce run of ALGO at P (4096)
# simulated ranks, 4 per node on the fat tree (1024 hosts), one message of BYTES (4 MiB), with
# benchmarks/bench_sim.sh's settings plus what 4096 ranks need:
#   smpi/shared-malloc-blocksize 16 MiB: in global mode SMPI maps its one shared block once per
#     block-size piece of every shared buffer, so with the 1 MiB default each 4 MiB buffer took
#     4 mappings per rank; at 4096 ranks bench_sim.sh's Rabenseifner aborted (SIGABRT after
#     718 s) and recursive doubling had 29554 mappings after 88 s and growing, towards Linux's
#     vm.max_map_count (65530). With 16 MiB a buffer is one mapping (peaks 45-53 k, no abort).
# Appends "platform,ranks_per_node,p,algo,bytes,sim_s" to OUTDIR/raw.csv and the wall time, peak
# RSS (/usr/bin/time -v; overcounts the shared pages), peak PSS and mapping count (sampled every
# 5 s), exit code and load to OUTDIR/runs.csv; the log is OUTDIR/ALGO.out.
set -eu
out=$1 algo=$2 limit=$3 p=${4:-4096} bytes=${5:-4194304}
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
exe=$(sh "$top/sim/build.sh" | tail -1)
sh "$top/sim/hostfile.sh" "$p" 4 >"$out/hosts.$algo"
[ -f "$out/raw.csv" ] || echo "platform,ranks_per_node,p,algo,bytes,sim_s" >"$out/raw.csv"
[ -f "$out/runs.csv" ] ||
    echo "platform,ranks_per_node,p,algo,bytes,wall_s,maxrss_kb,maxpss_kb,maxmaps,rc,load" >"$out/runs.csv"
export PT_COLL_TIMEOUT=0 PT_SIM_SHARED_WIN=1
/usr/bin/time -v -o "$out/time.$algo" timeout -k 5 "$limit" smpirun -np "$p" \
    -platform "$top/sim/platforms/fattree.xml" -hostfile "$out/hosts.$algo" --log=root.thres:critical \
    --cfg=smpi/simulate-computation:no --cfg=network/model:CM02 --cfg=network/crosstraffic:0 \
    --cfg=smpi/coll-selector:default --cfg=smpi/iprobe:1e-8 --cfg=smpi/shared-malloc:global \
    --cfg=smpi/auto-shared-malloc-thresh:65536 --cfg=smpi/shared-malloc-blocksize:16777216 \
    "$exe" --bench --shared --warmup 0 --iters 1 --algos "$algo" --sizes "$bytes" \
    >"$out/$algo.out" 2>&1 </dev/null &
job=$!
pss=0 maps=0
while kill -0 "$job" 2>/dev/null; do
    pid=$(pgrep -n -f "smpimain $exe .*--algos $algo --sizes" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        v=$(sed -n 's/^Pss: *\([0-9]*\).*/\1/p' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        [ -n "$v" ] && [ "$v" -gt "$pss" ] && pss=$v
        v=$(wc -l <"/proc/$pid/maps" 2>/dev/null || echo 0)
        [ "$v" -gt "$maps" ] && maps=$v
    fi
    sleep 5
done
rc=0
wait "$job" || rc=$?
grep -E '^[0-9]+,' "$out/$algo.out" | sed "s/^/fattree,4,/" >>"$out/raw.csv" || true
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.$algo" |
    awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.$algo")
echo "fattree,4,$p,$algo,$bytes,$wall,$rss,$pss,$maps,$rc,$(cut -d' ' -f1 /proc/loadavg)" >>"$out/runs.csv"
echo "scale4096: $algo p=$p: $wall s, RSS $rss KB, PSS $pss KB, $maps mappings, rc $rc" >&2
