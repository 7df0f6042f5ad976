#!/bin/sh
# The simulated data-parallel step (sim/pt_sim_step.c, issue 16) at 16 simulated ranks (4 nodes of
# 4 on the fat tree) on a small synthetic table (4 tensors, 3 backward ranges): with --check every
# bucketed dense allreduce (ring, Rabenseifner, hierarchical) must give each rank the serial sum;
# the injected compute must make a one-rank step last exactly forward + backward + update; the
# buckets must start during backward (early > 0) and a step with communication cannot be faster
# than its compute. Skipped (77) without smpicc.
. "${srcdir:-.}/tests/lib.sh"
command -v smpicc >/dev/null 2>&1 && command -v smpirun >/dev/null 2>&1 ||
    { echo "SKIP: no smpicc/smpirun (SimGrid SMPI: apt-get install libsimgrid-dev)"; exit 77; }
SIM_BUILD="$WORK/build" top_srcdir="$top_srcdir" sh "$top_srcdir/sim/build.sh" pt-sim-step \
    >"$WORK/build.out" 2>&1 || { cat "$WORK/build.out"; fail "pt-sim-step does not build with smpicc"; }
exe=$(tail -1 "$WORK/build.out")
# 3 ms forward, 2 + 3 + 1 ms of backward ranges (+ 0.5 ms tail), 1 ms update at batch 8; the
# measured step 10 ms scales them by 10 / 10.5
cat >"$WORK/t.tsv" <<'TSV'
paratrain_step_s	0.010
model	synthetic
numel	4099
batch	8
forward_s	0.003
backward_s	0.0065
update_s	0.001
topk_s	0.0001
sign_s	0.0001
ready	3000	1099	0.002
ready	1000	2000	0.003
ready	0	1000	0.001
param	a	0	1000
param	b	1000	1000
param	c	2000	1000
param	d	3000	1099
TSV
run() { # run P OUTFILE: 16 ranks 4 per node (or 1), every algorithm, weak 8 and strong 64
    sh "$top_srcdir/sim/hostfile.sh" "$1" 4 >"$WORK/hosts"
    PT_COLL_TIMEOUT=0 timeout -k 5 120 smpirun -np "$1" -platform "$top_srcdir/sim/platforms/fattree.xml" \
        -hostfile "$WORK/hosts" --log=root.thres:critical --cfg=smpi/simulate-computation:no \
        --cfg=smpi/iprobe:1e-8 --cfg=smpi/test:1e-7 "$exe" --table "$WORK/t.tsv" --check --bucket-mb 0.003 \
        --algos ring,rabenseifner,hierarchical,topk,sign --weak 8 --strong 64 >"$2" 2>&1
}
run 1 "$WORK/p1.out" || { cat "$WORK/p1.out"; fail "1 simulated rank"; }
run 16 "$WORK/p16.out" || { cat "$WORK/p16.out"; fail "16 simulated ranks (exit $?)"; }
grep '^FAIL' "$WORK/p16.out" && fail "a bucketed allreduce differs from the serial sum"
[ "$(grep -c '^16,' "$WORK/p16.out")" -eq 10 ] || { cat "$WORK/p16.out"; fail "not 10 result lines at p=16"; }
grep -q '^# p=16 nodes=4 ranks/node=4' "$WORK/p16.out" || fail "not 4 nodes of 4 under SMPI"
# columns: p,model,mode,batch_per_rank,algo,compute_s,step_s,efficiency,buckets,early
awk -F, '$1 == 1 && $3 == "weak" && $5 == "ring" {
    d = $7 - 0.010; if (d < 0) d = -d; if (d > 1e-6) { print "p=1 step " $7 " s, not the 0.010 s compute"; exit 1 } }' \
    "$WORK/p1.out" || fail "the injected compute of one rank is not forward + backward + update"
awk -F, '$1 == 16 && ($5 == "ring" || $5 == "rabenseifner" || $5 == "hierarchical") {
    if ($9 != 4 || $10 < 1) { print $5 " " $3 ": " $9 " buckets, " $10 " started early"; bad = 1 }
    if ($7 < $6) { print $5 " " $3 ": step " $7 " < compute " $6; bad = 1 } } END { exit bad }' \
    "$WORK/p16.out" || fail "buckets not overlapped with backward, or a step faster than its compute"
pass "simulated step at 16 ranks: bucketed ring/Rabenseifner/hierarchical equal the serial sum, buckets start during backward, compute injected exactly"
