# Two real "nodes" on one machine (sourced by tests/test_two_nodes.sh and
# benchmarks/bench_capped_link.sh; needs root and iproute2): two network namespaces joined by a
# veth pair (docs/SCALE.md, "Two real nodes"), Open MPI started in the first with an rsh agent
# that runs `ip netns exec` into the other, `--mca btl tcp,self` and both `*_tcp_if_include` set
# to the pair's /24. Each namespace also gets its own UTS namespace and hostname (`unshare
# --uts`): with the one hostname of the machine in both, Open MPI 4.1.4 took the ranks of the two
# namespaces for one host and crashed at 2 ranks per namespace (docs/SCALE.md).
#
#   netns_up ID DIR     makes namespaces ptA<ID> and ptB<ID>, veth va<ID> (in A, NET.1) and
#                       vb<ID> (in B, NET.2) with NET = 10.231.(ID % 200 + 20), lo up in both;
#                       writes DIR/agent.sh. On failure returns 1 with the first error line in
#                       $NETNS_ERR. Sets NETNS_A NETNS_B NETNS_NET NETNS_IF_A NETNS_IF_B NETNS_DIR.
#   netns_down          deletes both namespaces (and with them the veth pair and its qdiscs)
#   netns_cap RATE      caps both ends' egress with a token bucket: RATE is a tc rate (1gbit,
#                       100mbit) or none (removes the qdiscs); NETNS_BURST (default 16kb: a
#                       larger bucket lets a message of that size pass at the veth's own speed,
#                       RESULTS.md) and NETNS_LATENCY (default 50ms) are tbf's burst and queue
#                       latency
#   netns_mpirun SECS NP PPN prog args...
#                       NP ranks, PPN per namespace (--map-by slot: ranks 0..PPN-1 in A), under
#                       timeout SECS; passes PATH, LD_LIBRARY_PATH, OMP_NUM_THREADS,
#                       OPENBLAS_NUM_THREADS and PT_COLL_TIMEOUT to every rank
# The caller's trap must call netns_down.

netns_up() {
    NETNS_A="ptA$1" NETNS_B="ptB$1" NETNS_NET="10.231.$(($1 % 200 + 20))"
    NETNS_IF_A="va$1" NETNS_IF_B="vb$1" NETNS_DIR=$2
    mkdir -p "$NETNS_DIR"
    { ip netns add "$NETNS_A" && ip netns add "$NETNS_B" &&
      ip link add "$NETNS_IF_A" type veth peer name "$NETNS_IF_B" &&
      ip link set "$NETNS_IF_A" netns "$NETNS_A" && ip link set "$NETNS_IF_B" netns "$NETNS_B" &&
      ip -n "$NETNS_A" addr add "$NETNS_NET.1/24" dev "$NETNS_IF_A" &&
      ip -n "$NETNS_B" addr add "$NETNS_NET.2/24" dev "$NETNS_IF_B" &&
      ip -n "$NETNS_A" link set "$NETNS_IF_A" up && ip -n "$NETNS_B" link set "$NETNS_IF_B" up &&
      ip -n "$NETNS_A" link set lo up && ip -n "$NETNS_B" link set lo up; } 2>"$NETNS_DIR/ns.err" ||
        { NETNS_ERR=$(head -1 "$NETNS_DIR/ns.err"); return 1; }
    # the rsh agent: "agent HOST CMD..." runs CMD in HOST's namespace, under that node's hostname
    cat >"$NETNS_DIR/agent.sh" <<AG
#!/bin/sh
h=\$1; shift
case "\$h" in $NETNS_NET.1) ns=$NETNS_A ;; *) ns=$NETNS_B ;; esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$ns && \$*"
AG
    chmod +x "$NETNS_DIR/agent.sh"
}

netns_down() {
    [ -z "${NETNS_A:-}" ] || ip netns del "$NETNS_A" 2>/dev/null || true
    [ -z "${NETNS_B:-}" ] || ip netns del "$NETNS_B" 2>/dev/null || true
}

netns_cap() {
    for _nd in "$NETNS_A $NETNS_IF_A" "$NETNS_B $NETNS_IF_B"; do
        set -- "$1" ${_nd}
        if [ "$1" = none ]; then
            ip netns exec "$2" tc qdisc del dev "$3" root 2>/dev/null || true
        else
            ip netns exec "$2" tc qdisc replace dev "$3" root tbf rate "$1" \
                burst "${NETNS_BURST:-16kb}" latency "${NETNS_LATENCY:-50ms}" || return 1
        fi
    done
}

netns_mpirun() {
    _secs=$1 _np=$2 _ppn=$3
    shift 3
    printf '%s slots=%s\n%s slots=%s\n' "$NETNS_NET.1" "$_ppn" "$NETNS_NET.2" "$_ppn" >"$NETNS_DIR/hosts"
    case "$NETNS_DIR" in /*) _ag=$NETNS_DIR/agent.sh ;; *) _ag=$(pwd)/$NETNS_DIR/agent.sh ;; esac
    timeout -k 5 "$_secs" ip netns exec "$NETNS_A" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$NETNS_A" \
        mpirun -np "$_np" --hostfile "$NETNS_DIR/hosts" --map-by slot --bind-to none \
        --mca plm_rsh_agent "$_ag" --mca btl tcp,self \
        --mca btl_tcp_if_include "$NETNS_NET.0/24" --mca oob_tcp_if_include "$NETNS_NET.0/24" \
        -x PATH -x LD_LIBRARY_PATH -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x PT_COLL_TIMEOUT "$@"
}
