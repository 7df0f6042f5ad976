#!/bin/sh
# Two real "nodes" on one machine: network namespaces joined by a veth pair (machine-notes.md),
# Open MPI over TCP only (btl tcp,self), 1 rank per node (PT_TWO_NODES_PPN=2 tries 2 per node:
# with Debian's Open MPI 4.1.4 that crashes in ob1's tcp receive path during MPI_Comm_dup, with
# btl tcp,self and tcp,vader,self alike, so it is not the default; see docs/SCALE.md). Checks that
#   1. the hierarchical allreduce finds the real node boundary (MPI_Comm_split_type SHARED, no
#      PT_FAKE_NODE_SIZE): pt-sim-allreduce built with mpicc prints "nodes=2" and every
#      algorithm equals the serial sum across the nodes;
#   2. data-parallel training across the two nodes (--allreduce hierarchical and ring) equals the
#      single-node run of as many ranks (loss trajectory within 1e-5 relative, parameters 1e-5).
# Skipped (77) with the reason when namespaces cannot be made (not root, no `ip netns`) or the MPI
# is not Open MPI.
. "${srcdir:-.}/tests/lib.sh"
skip_unless_openmpi "the namespace launcher uses Open MPI's plm_rsh_agent"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: no ip command (iproute2)"; exit 77; }
id=$$ ns_a="ptA$id" ns_b="ptB$id" net="10.231.$((id % 200 + 20))"
cleanup() { ip netns del "$ns_a" 2>/dev/null; ip netns del "$ns_b" 2>/dev/null; true; }
trap cleanup EXIT INT TERM
{ ip netns add "$ns_a" && ip netns add "$ns_b" &&
  ip link add "va$id" type veth peer name "vb$id" &&
  ip link set "va$id" netns "$ns_a" && ip link set "vb$id" netns "$ns_b" &&
  ip -n "$ns_a" addr add "$net.1/24" dev "va$id" && ip -n "$ns_b" addr add "$net.2/24" dev "vb$id" &&
  ip -n "$ns_a" link set "va$id" up && ip -n "$ns_b" link set "vb$id" up &&
  ip -n "$ns_a" link set lo up && ip -n "$ns_b" link set lo up; } 2>"$WORK/ns.err" ||
    { echo "SKIP: cannot make network namespaces: $(head -1 "$WORK/ns.err")"; exit 77; }
! command -v ping >/dev/null || ip netns exec "$ns_a" ping -c 1 -W 2 "$net.2" >/dev/null 2>&1 ||
    fail "the veth pair does not carry packets"
# the rsh agent: "agent HOST CMD..." runs CMD in HOST's namespace
cat >"$WORK/agent.sh" <<AG
#!/bin/sh
h=\$1; shift
case "\$h" in $net.1) ns=$ns_a ;; *) ns=$ns_b ;; esac
exec ip netns exec "\$ns" sh -c "\$*"
AG
chmod +x "$WORK/agent.sh"
ppn=${PT_TWO_NODES_PPN:-1} np=$((2 * ${PT_TWO_NODES_PPN:-1}))
printf '%s slots=%s\n%s slots=%s\n' "$net.1" "$ppn" "$net.2" "$ppn" >"$WORK/hosts"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
two_nodes() { # two_nodes SECONDS prog args...: np ranks, ppn on each namespace
    secs=$1; shift
    timeout -k 5 "$secs" ip netns exec "$ns_a" mpirun -np "$np" --hostfile "$WORK/hosts" --map-by slot \
        --bind-to none --mca plm_rsh_agent "$(abs "$WORK/agent.sh")" --mca btl tcp,self \
        --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24" \
        -x PATH -x LD_LIBRARY_PATH -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x PT_COLL_TIMEOUT "$@"
}
# 1. node detection and every algorithm across the nodes
SMPICC=mpicc SIM_BUILD="$WORK/build" top_srcdir="$top_srcdir" sh "$top_srcdir/sim/build.sh" >"$WORK/build.out" 2>&1 ||
    { cat "$WORK/build.out"; fail "pt-sim-allreduce does not build with mpicc"; }
exe=$(abs "$(tail -1 "$WORK/build.out")")
two_nodes 120 "$exe" --check --algos ring,recursive_doubling,rabenseifner,binomial,hierarchical,sparse_allgather,sign,fp16 \
    --counts 0,1,1000,65537 >"$WORK/check.out" 2>&1 || { cat "$WORK/check.out"; fail "allreduce across the two nodes"; }
grep -q "^# p=$np nodes=2 ranks/node=$ppn" "$WORK/check.out" ||
    { cat "$WORK/check.out"; fail "the node boundary was not detected (want nodes=2 ranks/node=$ppn)"; }
pass "2 namespaces x $ppn rank(s): nodes=2 ranks/node=$ppn detected; $(grep -c '^ok' "$WORK/check.out") checks equal the serial sum"
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
pass "data-parallel training across 2 namespace nodes equals the single-node run (hierarchical, ring)"
