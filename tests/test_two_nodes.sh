#!/bin/sh
# Two real "nodes" on one machine: network namespaces joined by a veth pair (tests/netns.sh,
# machine-notes.md), each with its own hostname (`unshare --uts`), Open MPI over TCP only (btl
# tcp,self). Checks that
#   1. the hierarchical allreduce finds the real node boundary (MPI_Comm_split_type SHARED, no
#      PT_FAKE_NODE_SIZE) at 1 and at 2 ranks per node: pt-sim-allreduce built with mpicc prints
#      "nodes=2 ranks/node=L" and every algorithm equals the serial sum across the nodes (at 2 per
#      node the hierarchical one sums in a shared-memory window inside each namespace and rings
#      across). Without the per-namespace hostnames Open MPI 4.1.4 crashed there (SIGSEGV in ob1
#      under MPI_Comm_dup; docs/SCALE.md);
#   2. data-parallel training across the two nodes at 2 ranks per node (--allreduce hierarchical
#      and ring) equals the single-node run of as many ranks (loss trajectory within 1e-5
#      relative, parameters 1e-5).
# PT_TWO_NODES_PPN="1 2" (default) are the ranks per node of part 1; part 2 runs at the last.
# Skipped (77) with the reason when namespaces cannot be made (not root, no `ip netns`) or the MPI
# is not Open MPI.
. "${srcdir:-.}/tests/lib.sh"
skip_unless_openmpi "the namespace launcher uses Open MPI's plm_rsh_agent"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: no ip command (iproute2)"; exit 77; }
. "${srcdir:-.}/tests/netns.sh"
trap netns_down EXIT INT TERM
netns_up $$ "$WORK" || { echo "SKIP: cannot make network namespaces: $NETNS_ERR"; exit 77; }
! command -v ping >/dev/null || ip netns exec "$NETNS_A" ping -c 1 -W 2 "$NETNS_NET.2" >/dev/null 2>&1 ||
    fail "the veth pair does not carry packets"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
two_nodes() { # two_nodes SECONDS prog args...: np ranks, ppn on each namespace
    secs=$1; shift
    netns_mpirun "$secs" "$np" "$ppn" "$@"
}
# 1. node detection and every algorithm across the nodes
SMPICC=mpicc SIM_BUILD="$WORK/build" top_srcdir="$top_srcdir" sh "$top_srcdir/sim/build.sh" >"$WORK/build.out" 2>&1 ||
    { cat "$WORK/build.out"; fail "pt-sim-allreduce does not build with mpicc"; }
exe=$(abs "$(tail -1 "$WORK/build.out")")
for ppn in ${PT_TWO_NODES_PPN:-1 2}; do
    np=$((2 * ppn))
    two_nodes 120 "$exe" --check --algos ring,recursive_doubling,rabenseifner,binomial,hierarchical,sparse_allgather,sign,fp16 \
        --counts 0,1,1000,65537 >"$WORK/check$ppn.out" 2>&1 ||
        { cat "$WORK/check$ppn.out"; fail "allreduce across the two nodes, $ppn rank(s) per node"; }
    grep -q "^# p=$np nodes=2 ranks/node=$ppn" "$WORK/check$ppn.out" ||
        { cat "$WORK/check$ppn.out"; fail "the node boundary was not detected (want nodes=2 ranks/node=$ppn)"; }
    pass "2 namespaces x $ppn rank(s): nodes=2 ranks/node=$ppn detected; $(grep -c '^ok' "$WORK/check$ppn.out") checks equal the serial sum"
done
# 2. training across the nodes equals the single-node run
need_data
P=$(abs "$PARATRAIN") D=$(abs "$DATA") W=$(abs "$WORK")
common="--data $D --model mlp:784-64-32-10 --batch 100 --max-steps 30 --optimizer momentum
        --lr 0.05 --log-every 1 --eval-every 1000 --quiet true --seed 7"
# shellcheck disable=SC2086
mpirun_t "$np" 180 "$P" train $common --allreduce hierarchical --ckpt-dir "$W/one" --metrics "$W/one.jsonl" \
    >"$WORK/one.out" 2>&1 || { cat "$WORK/one.out"; fail "single-node training"; }
train_field "$WORK/one.jsonl" loss >"$WORK/l-one"
for algo in hierarchical ring; do
    # shellcheck disable=SC2086
    two_nodes 240 "$P" train $common --allreduce $algo --ckpt-dir "$W/two-$algo" --metrics "$W/two-$algo.jsonl" \
        >"$WORK/two-$algo.out" 2>&1 || { cat "$WORK/two-$algo.out"; fail "training across the two nodes ($algo)"; }
    train_field "$WORK/two-$algo.jsonl" loss >"$WORK/l-two"
    paste "$WORK/l-one" "$WORK/l-two" | awk -v n="$algo" '
        { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 1e-3 ? $1 : 1e-3); if (r > w) w = r }
        END { printf "%s: max relative loss difference %.2e over %d steps; ", n, w, NR;
              exit (w <= 1e-5 && NR == 30) ? 0 : 1 }' || fail "loss: one node vs two ($algo)"
    "$PT_CKPT" diff "$WORK/one" "$WORK/two-$algo" --tol 1e-5 >"$WORK/diff-$algo" ||
        { cat "$WORK/diff-$algo"; fail "parameters: one node vs two ($algo)"; }
    tail -1 "$WORK/diff-$algo"
done
pass "data-parallel training across 2 namespace nodes x $ppn rank(s) equals the single-node run of $np (hierarchical, ring)"
