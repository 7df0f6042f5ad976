#!/bin/sh
# Simulated allreduce at scale (SimGrid SMPI): every paratrain algorithm at 64..1024(+) simulated
# ranks on the platforms of sim/platforms/, a few message sizes; then sim/formula.py puts each
# simulated time next to the algorithm's own alpha-beta formula (its src/comm file header) with
# the platform's alpha and beta, into benchmarks/out/sim/sim_allreduce.csv and a markdown table.
# Every smpirun's wall time and peak memory go to runs.csv: maxrss_kb from /usr/bin/time -v
# (overcounts: SMPI_SHARED_MALLOC maps one physical page at many addresses, and RSS counts each)
# and maxpss_kb, the peak proportional set size sampled every 2 s from /proc/PID/smaps_rollup.
#   benchmarks/bench_sim.sh [RUNFILE]     (default: the RUNS below; one run a line:
#                                          platform ranks_per_node p sizes algos)
# Simulation settings (docs/SCALE.md): CM02 network model (latency + size/bandwidth, max-min
# sharing, no SMPI piecewise correction factors), no cross-traffic, compute not simulated
# (gamma = 0), SMPI_SHARED_MALLOC buffers, MPI_Iprobe charged 10 ns; SimGrid's mpich collective
# selector below 1024 ranks, its default one from 1024 up (mpich's SMP-aware communicator setup
# makes MPI_Comm_dup take minutes there); SIM_SELECTOR overrides both.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$top/benchmarks/out/sim}
mkdir -p "$out"
exe=$(sh "$top/sim/build.sh" | tail -1)
ALL=ring,ring_pipelined,recursive_doubling,rabenseifner,binomial,hierarchical,sparse_allgather,sparcml,gtopk,fp16,mpi
RUNS=${1:-}
if [ -z "$RUNS" ]; then
    RUNS=$out/runs.txt
    cat >"$RUNS" <<RUNS_EOF
crossbar 1 64 4096,262144,4194304 $ALL,sign
crossbar 1 256 4096,262144,4194304 $ALL
crossbar 1 256 4096,262144 sign
crossbar 1 1024 4096,4194304 $ALL
crossbar 1 1024 4096 sign
fattree 4 64 262144,4194304 ring,recursive_doubling,rabenseifner,hierarchical,mpi
fattree 4 256 262144,4194304 ring,recursive_doubling,rabenseifner,hierarchical,mpi
fattree 4 1024 4194304 ring,rabenseifner,hierarchical
fattree_tapered 4 256 4194304 ring,rabenseifner,hierarchical
dragonfly 4 256 4194304 ring,rabenseifner,hierarchical
fattree 4 4096 4194304 hierarchical
RUNS_EOF
fi
raw=$out/raw.csv runs=$out/runs.csv
[ -f "$raw" ] || echo "platform,ranks_per_node,p,algo,bytes,sim_s" >"$raw"
[ -f "$runs" ] || echo "platform,ranks_per_node,p,algos,sizes,wall_s,maxrss_kb,rc,maxpss_kb" >"$runs"
pss_watch() { # the peak Pss (KB) of the smpimain under this shell until it exits, into $1
    _max=0
    while :; do
        _pid=$(pgrep -n -f "smpimain.*$exe" 2>/dev/null || true)
        if [ -n "$_pid" ]; then
            _p=$(sed -n 's/^Pss: *\([0-9]*\).*/\1/p' "/proc/$_pid/smaps_rollup" 2>/dev/null || true)
            [ -n "$_p" ] && [ "$_p" -gt "$_max" ] && _max=$_p && echo "$_max" >"$1"
        fi
        sleep 2
    done
}
export PT_COLL_TIMEOUT=0 PT_SIM_SHARED_WIN=1
while read -r plat l p sizes algos; do
    case "$plat" in "" | "#"*) continue ;; esac
    sh "$top/sim/hostfile.sh" "$p" "$l" >"$out/hosts"
    echo "bench_sim: $plat L=$l p=$p $algos @ $sizes" >&2
    rc=0
    # mpich's SMP-aware communicator setup stalls MPI_Comm_dup for minutes at 1024 ranks
    sel=${SIM_SELECTOR:-mpich}
    [ "$p" -lt 1024 ] || sel=${SIM_SELECTOR:-default}
    echo 0 >"$out/pss.txt"
    pss_watch "$out/pss.txt" &
    watcher=$!
    # no nice: on a shared 2-core machine it starved the runs (sim-step helper, session 9)
    /usr/bin/time -v -o "$out/time.txt" timeout -k 5 "${SIM_TIMEOUT:-1800}" smpirun -np "$p" \
        -platform "$top/sim/platforms/$plat.xml" -hostfile "$out/hosts" --log=root.thres:critical \
        --cfg=smpi/simulate-computation:no --cfg=network/model:CM02 --cfg=network/crosstraffic:0 \
        --cfg=smpi/coll-selector:$sel --cfg=smpi/iprobe:1e-8 --cfg=smpi/shared-malloc:global \
        --cfg=smpi/auto-shared-malloc-thresh:65536 \
        --cfg=smpi/shared-malloc-blocksize:16777216 \
        "$exe" --bench --shared --warmup 0 --iters 1 --algos "$algos" --sizes "$sizes" \
        >"$out/run.out" 2>&1 </dev/null || rc=$?
    kill "$watcher" 2>/dev/null || true
    grep -E '^[0-9]+,' "$out/run.out" | sed "s/^/$plat,$l,/" >>"$raw" || true
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.txt" |
        awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.txt")
    pss=$(cat "$out/pss.txt")
    echo "$plat,$l,$p,\"$algos\",\"$sizes\",$wall,$rss,$rc,$pss" >>"$runs"
    echo "bench_sim: $wall s, RSS $rss KB, PSS $pss KB, rc $rc" >&2
done <"$RUNS"
/usr/bin/python3 "$top/sim/formula.py" "$raw" "$out/sim_allreduce.csv" >"$out/sim_allreduce.md"
cat "$out/sim_allreduce.md"
