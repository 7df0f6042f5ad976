#!/bin/sh
# Simulated data-parallel training step at scale (SimGrid SMPI, sim/pt_sim_step.c): mlp, resnet
# and gpt, each rank replaying the single-rank step that sim/models/NAME.tsv records (sim/profile.sh)
# with src/comm's collectives, the gradient buckets of src/parallel/grad_sync.c overlapped with
# backward. Weak scaling (a fixed batch per rank) and strong scaling (a fixed global batch) at
# 16-1024 simulated ranks, 4 per node, on the fat tree of sim/platforms/fattree.xml.
#   benchmarks/bench_sim_step.sh [RUNFILE]   (default: the RUNS below; one run a line:
#                                             platform ranks_per_node p model algos)
# -> benchmarks/out/sim_step/: raw.csv (every simulated step), runs.csv (each smpirun's wall
# time and peak memory, /usr/bin/time -v), sim_step.csv and sim_step.md (efficiency tables).
# Batches: weak = the profile's batch per rank (mlp 64, resnet 32, gpt 8); strong = a global
# batch of mlp 8192, resnet 4096, gpt 1024 (so 8, 4 and 1 per rank at 1024). --bucket-mb
# ${BUCKET_MB:-4}. Same simulation settings as benchmarks/bench_sim.sh (docs/SCALE.md), and
# MPI_Test charged 0.1 us (SMPI's default 100 us a call would dominate the bucket polling) and
# MPI_Iprobe 1 us, not 10 ns: the sparse collectives poll it and each poll is a SimGrid call, so
# fewer polls for the same wait (a wait ends up to 1 us late: the 16-rank mlp top-k step moved
# by 1.4 us of 29.8 ms).
# Shared-malloc block 16 MiB: one mapping per shared buffer (sim/scale4096.sh says why).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$top/benchmarks/out/sim_step}
mkdir -p "$out"
exe=$(sh "$top/sim/build.sh" pt-sim-step | tail -1)
bucket=${BUCKET_MB:-4}
DENSE=ring,rabenseifner,hierarchical
RUNS=${1:-}
if [ -z "$RUNS" ]; then
    RUNS=$out/runs.txt
    : >"$RUNS"
    for p in 16 64 256; do
        for m in mlp resnet gpt; do echo "fattree 4 $p $m $DENSE,topk,sign" >>"$RUNS"; done
    done
    # 1024: the ring-based schedules (ring, hierarchical, sign's allgather) send O(p) messages a
    # rank, and SimGrid took minutes of wall time a collective here; the log p ones only
    for m in mlp resnet gpt; do echo "fattree 4 1024 $m rabenseifner,topk" >>"$RUNS"; done
fi
weak() { case $1 in mlp) echo 64 ;; resnet) echo 32 ;; gpt) echo 8 ;; esac; }
strong() { case $1 in mlp) echo 8192 ;; resnet) echo 4096 ;; gpt) echo 1024 ;; esac; }
raw=$out/raw.csv runs=$out/runs.csv
[ -f "$raw" ] || echo "platform,ranks_per_node,bucket_mb,p,model,mode,batch_per_rank,algo,compute_s,step_s,efficiency,buckets,early" >"$raw"
[ -f "$runs" ] || echo "platform,ranks_per_node,p,model,algos,wall_s,maxrss_kb,rc,load" >"$runs"
export PT_COLL_TIMEOUT=0 PT_SIM_SHARED_WIN=1
while read -r plat l p model algos; do
    case "$plat" in "" | "#"*) continue ;; esac
    sh "$top/sim/hostfile.sh" "$p" "$l" >"$out/hosts"
    echo "bench_sim_step: $plat L=$l p=$p $model $algos" >&2
    # mpich's SMP-aware communicator setup stalls MPI_Comm_dup for minutes at 1024 ranks
    sel=${SIM_SELECTOR:-mpich}
    [ "$p" -lt 1024 ] || sel=${SIM_SELECTOR:-default}
    rc=0
    /usr/bin/time -v -o "$out/time.txt" timeout -k 5 "${SIM_TIMEOUT:-1200}" smpirun -np "$p" \
        -platform "$top/sim/platforms/$plat.xml" -hostfile "$out/hosts" --log=root.thres:critical \
        --cfg=smpi/simulate-computation:no --cfg=network/model:CM02 --cfg=network/crosstraffic:0 \
        --cfg=smpi/coll-selector:$sel --cfg=smpi/iprobe:1e-6 --cfg=smpi/test:1e-7 --cfg=smpi/shared-malloc:global \
        --cfg=smpi/auto-shared-malloc-thresh:65536 --cfg=smpi/shared-malloc-blocksize:16777216 \
        "$exe" --table "$top/sim/models/$model.tsv" --algos "$algos" --weak "$(weak "$model")" \
        --strong "$(strong "$model")" --bucket-mb "$bucket" >"$out/run.out" 2>&1 </dev/null || rc=$?
    grep -E '^[0-9]+,' "$out/run.out" | sed "s/^/$plat,$l,$bucket,/" >>"$raw" || true
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.txt" |
        awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.txt")
    echo "$plat,$l,$p,$model,\"$algos\",$wall,$rss,$rc,$(cut -d' ' -f1 /proc/loadavg)" >>"$runs"
    echo "bench_sim_step: $wall s, RSS $rss KB, rc $rc" >&2
done <"$RUNS"
/usr/bin/python3 "$top/sim/step_table.py" "$raw" "$runs" "$out/sim_step.csv" "$top"/sim/models/*.tsv \
    >"$out/sim_step.md"
cat "$out/sim_step.md"
