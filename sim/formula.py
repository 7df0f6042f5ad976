#!/usr/bin/python3
"""Each simulated allreduce time next to its algorithm's alpha-beta formula (the cost stated in
its src/comm file header), with the platform's alpha and beta; gamma = 0 because the simulation
does not charge computation (smpi/simulate-computation:no).

  formula.py RAW.csv OUT.csv > TABLE.md

alpha: the network latency of a route between two nodes as the platform file states it (for the
fat trees the route inside one leaf, which all neighbour hops of ring-like schedules and the
short-distance rounds of the others take; across leaves it is twice that); beta: 1/12.5 GB/s.
With L > 1 ranks per node the flat algorithms' formulas assume every hop is a network hop (the
loopback hops are 20x cheaper); the hierarchical one is costed as its header says: a ring over
N = p/L nodes on n/L elements with the L rings sharing the node's link (so L*beta), plus 3 node
barriers of 2 log2(L) loopback latencies."""
import csv, math, sys

BETA = 1 / 12.5e9
ALPHA = {"crossbar": 1e-6, "fattree": 1e-6, "fattree_tapered": 1e-6, "dragonfly": 1e-6}
LOOP_ALPHA = 0.05e-6
DENSITY = 0.001           # pt-sim-allreduce --density default
SEGMENT = 256 * 1024      # --segment default (ring_pipelined), and PT_RING_SEGMENT's default
PIPELINE_MIN = 16 << 20   # PT_RING_PIPELINE_MIN default
SPARCML_SWITCH = 0.125    # PT_SPARCML_DENSE_SWITCH


def pow2_below(p):
    return 1 << (p.bit_length() - 1)


def ring_pieces(n_el, p, seg_bytes, pipeline_min):
    seg = max(1, seg_bytes // 4)
    piece = seg * p
    if n_el <= piece or 4 * n_el < pipeline_min:
        return 1
    return -(-n_el // piece)


def formula(algo, p, L, nbytes, a, b):
    n_el = nbytes // 4
    n = float(nbytes)
    pp = pow2_below(p)
    lg = int(math.log2(pp))
    fold = (2 * a + 2 * n * b) if pp != p else 0.0
    k = max(1, min(n_el, int(DENSITY * n_el)))
    if algo in ("ring", "ring_pipelined"):
        m = ring_pieces(n_el, p, SEGMENT, PIPELINE_MIN if algo == "ring" else 0)
        lat = (2 * (p - 1) if m == 1 else m + 2 * (p - 1) - 1) * a
        return lat + 2 * (p - 1) / p * n * b
    if algo == "recursive_doubling":
        return lg * (a + n * b) + fold
    if algo == "rabenseifner":
        return 2 * lg * a + 2 * (pp - 1) / pp * n * b + fold
    if algo == "binomial":
        c = math.ceil(math.log2(p))
        return 2 * c * (a + n * b)
    if algo == "hierarchical":
        N = p // L
        bar = 3 * 2 * math.log2(L) * LOOP_ALPHA if L > 1 else 0.0
        if N == 1:
            return bar
        return bar + 2 * (N - 1) * a + 2 * (N - 1) / N * (n / L) * (L * b)
    if algo == "fp16":
        return 2 * (p - 1) * a + 2 * (p - 1) / p * (2 * n_el) * b
    if algo == "sign":
        w = -(-n_el // 32)
        return (p - 1) * a + (p - 1) * (4 * w + 4) * b
    if algo == "sparse_allgather":
        return (p - 1) * a + (p - 1) * 8 * k * b
    if algo == "gtopk":
        return lg * (a + 8 * k * b) + (2 * a + 2 * 8 * k * b if pp != p else 0.0)
    if algo == "sparcml":
        t, entries = 0.0, k
        for _ in range(lg):
            if entries > SPARCML_SWITCH * n_el:
                t += a + 4 * n_el * b
            else:
                t += a + 8 * entries * b
            entries = min(2 * entries, n_el)
        return t + fold
    return None  # mpi: SimGrid's own algorithm


def formula_as_scheduled(algo, p, L, nbytes, a, b):
    """Where the header's formula assumes one message at a time per rank but the schedule posts
    several at once on the rank's one link: binomial's broadcast sends to all of a rank's
    children (up to ceil(log2 p)) in one round, so they share its link and the broadcast's
    bandwidth term is sum_{j=1..c} j n beta = c(c+1)/2 n beta instead of c n beta."""
    if algo == "binomial":
        c = math.ceil(math.log2(p))
        n = float(nbytes)
        return 2 * c * a + (c + c * (c + 1) / 2) * n * b
    return None


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    out = []
    for r in rows:
        p, L, nb = int(r["p"]), int(r["ranks_per_node"]), int(r["bytes"])
        sim = float(r["sim_s"])
        a = ALPHA.get(r["platform"], 1e-6)
        f = formula(r["algo"], p, L, nb, a, BETA)
        ratio = sim / f if f else None
        f2 = formula_as_scheduled(r["algo"], p, L, nb, a, BETA)
        out.append(dict(r, formula_s="%.6e" % f if f else "", ratio="%.3f" % ratio if ratio else "",
                        scheduled_s="%.6e" % f2 if f2 else "",
                        ratio_scheduled="%.3f" % (sim / f2) if f2 else ""))
    with open(sys.argv[2], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()) + ["formula_s", "ratio", "scheduled_s", "ratio_scheduled"])
        w.writeheader()
        w.writerows(out)
    print("| platform | L | p | algorithm | bytes | simulated (us) | formula (us) | sim/formula |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out:
        f = float(r["formula_s"]) * 1e6 if r["formula_s"] else None
        mark = ""
        if r["ratio"] and abs(float(r["ratio"]) - 1) > 0.10:
            mark = " **"
        extra = ""
        if r["scheduled_s"]:
            extra = " (as scheduled: %.1f us, %s)" % (float(r["scheduled_s"]) * 1e6, r["ratio_scheduled"])
        print("| %s | %s | %s | %s | %s | %.1f | %s | %s%s%s |" % (
            r["platform"], r["ranks_per_node"], r["p"], r["algo"], r["bytes"],
            float(r["sim_s"]) * 1e6, "%.1f" % f if f else "-", r["ratio"] or "-", mark, extra))


if __name__ == "__main__":
    main()
