#!/bin/sh
# Parameter server (issue 15; docs/ARCHITECTURE.md, "Parameter server").
# BSP: S servers + W workers train as W data-parallel ranks with the same global batch. The
# servers sum the W pushes in worker order; data parallel sums with its allreduce, so with W <= 2
# the sums are the same floats (a + b = b + a) and the runs are bitwise equal; at W = 3 the order
# may differ: per-step loss within 1e-5 relative, parameters and optimizer state within 1e-5
# (pt-ckpt diff), the end record's param_norm within 1e-5 relative. Measured differences are
# printed.
. "${srcdir:-.}/tests/lib.sh"
need_np 6 "the parameter-server grids (up to 3 servers + 3 workers)"
need_data
common="--data $DATA --model mlp:784-64-32-10 --batch 60 --max-steps 30 --optimizer momentum
        --lr 0.05 --dropout 0.1 --log-every 1 --eval-every 1000 --quiet true --seed 7"
end_field() { grep '"event": "end"' "$1" | sed "s/.*\"$2\": \([^,}]*\).*/\1/"; }
compare() { # compare A B TOL: losses, end record, checkpoints
    a=$1 b=$2 tol=$3
    train_field "$WORK/$a.jsonl" loss >"$WORK/l-$a"
    train_field "$WORK/$b.jsonl" loss >"$WORK/l-$b"
    paste "$WORK/l-$a" "$WORK/l-$b" | awk -v n="$a vs $b" -v t="$tol" '
        { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 1e-3 ? $1 : 1e-3); if (r > w) w = r }
        END { printf "%s: loss max rel diff %.2e over %d steps; ", n, w, NR; exit (w <= t && NR == 30) ? 0 : 1 }' ||
        fail "loss trajectory $a vs $b"
    for f in param_norm param_probe; do
        x=$(end_field "$WORK/$a.jsonl" $f) y=$(end_field "$WORK/$b.jsonl" $f)
        awk -v x="$x" -v y="$y" -v t="$tol" -v f=$f 'BEGIN { d = x - y; if (d < 0) d = -d; s = x < 0 ? -x : x;
            printf "%s %s/%s; ", f, x, y; exit d <= t * (s > 1 ? s : 1) ? 0 : 1 }' || fail "$f $a vs $b"
    done
    "$PT_CKPT" diff "$WORK/$a" "$WORK/$b" --tol "$tol" >"$WORK/diff-$a-$b" ||
        { cat "$WORK/diff-$a-$b"; fail "checkpoints $a vs $b"; }
    tail -1 "$WORK/diff-$a-$b"
}

# ---- BSP = data parallel, every S in {1, 2, 3} with every W in {1, 2, 3} (up to 6 ranks)
for W in 1 2 3; do
    train_run dp$W $W
    for S in 1 2 3; do
        train_run ps$S-w$W $((S + W)) --ps-servers $S
        tol=0; [ $W = 3 ] && tol=1e-5
        compare dp$W ps$S-w$W $tol
    done
done
train_run ps2-w2-spread 4 --ps-servers 2 --ps-placement spread --optimizer adam --lr 0.002
train_run dp2-adam 2 --optimizer adam --lr 0.002
compare dp2-adam ps2-w2-spread 0
pass "BSP parameter server = data parallel (S 1, 2, 3 at W 1, 2, 3; momentum and adam; placement first and spread)"

# ---- the rma transport (MPI_Put / MPI_Get into the servers' windows): the same sums, so the same
# bits as p2p (and as data parallel where that is bitwise)
train_run ps1-w2-rma 3 --ps-servers 1 --ps-transport rma
compare dp2 ps1-w2-rma 0
train_run ps2-w3-rma 5 --ps-servers 2 --ps-transport rma
compare ps2-w3 ps2-w3-rma 0
train_run ps2-w2-rma-spread 4 --ps-servers 2 --ps-placement spread --optimizer adam --lr 0.002 --ps-transport rma
compare ps2-w2-spread ps2-w2-rma-spread 0
pass "BSP over rma = BSP over p2p, bitwise (S 1 at W 2, S 2 at W 3, S 2 spread with adam at W 2)"

# ---- checkpoints: PS -> DP -> PS, and a bitwise resume under BSP
train_run ps-a 3 --ps-servers 1 --stop-at 10
train_run dp-b 2 --resume "$WORK/ps-a" --stop-at 20
train_run ps-c 4 --ps-servers 2 --resume "$WORK/dp-b"
"$PT_CKPT" diff "$WORK/dp2" "$WORK/ps-c" --tol 0 >"$WORK/diff-trip" || { cat "$WORK/diff-trip"; fail "round trip"; }
[ "$(end_field "$WORK/ps-c.jsonl" param_norm)" = "$(end_field "$WORK/dp2.jsonl" param_norm)" ] || fail "round trip: param_norm"
tail -1 "$WORK/diff-trip"
pass "checkpoint round trip PS (S 1) -> DP -> PS (S 2) equals uninterrupted data parallel"
train_run ps-r1 5 --ps-servers 2 --stop-at 13
cp -r "$WORK/ps-r1" "$WORK/ps-r2"
train_run ps-r2 5 --ps-servers 2 --resume "$WORK/ps-r2"
"$PT_CKPT" diff "$WORK/ps2-w3" "$WORK/ps-r2" --tol 0 >"$WORK/diff-resume" || { cat "$WORK/diff-resume"; fail "resume"; }
pass "BSP resume at step 13 is bitwise the uninterrupted run ($(tail -1 "$WORK/diff-resume"))"

# ---- bad input: one message, non-zero exit on every rank, no hang (2 ranks)
small="--data $DATA --model mlp:784-16-10 --batch 20 --max-steps 2 --quiet true"
expect_error ps-s-ge-world 2 "leaves no worker" train $small --ps-servers 2
expect_error ps-sync-no-servers 2 "needs parameter servers" train $small --ps-sync asp
expect_error ps-with-tp 2 "does not combine with tensor or pipeline" train $small --ps-servers 1 --tp 2
expect_error ps-with-pp 2 "does not combine with tensor or pipeline" train $small --ps-servers 1 --pp 2
expect_error ps-sync-unknown 2 "unknown --ps-sync 'foo'" train $small --ps-servers 1 --ps-sync foo
expect_error ps-ssp-bad 2 "unknown --ps-sync 'ssp:-1'" train $small --ps-servers 1 --ps-sync ssp:-1
expect_error ps-placement 2 "unknown --ps-placement" train $small --ps-servers 1 --ps-placement last
expect_error ps-transport 2 "unknown --ps-transport 'shm'" train $small --ps-servers 1 --ps-transport shm
expect_error ps-rma-no-servers 2 "--ps-transport rma needs parameter servers" train $small --ps-transport rma

# ---- SSP with a straggler: world rank 2 (worker 1 of 3, one server) sleeps 40 ms per step.
# Every worker's per-step log (--metrics PATH: PATH.worker<w>) records the clock it computed at
# and the smallest clock of all workers' pushes included in the parameters it computed on
# (min_clock, from the servers' replies); the bound is min_clock >= clock - s. With s > 0 some
# step must use the slack (min_clock < clock), else the test proves nothing. Both transports:
# over rma the gradient and the range move by MPI_Put / MPI_Get, the headers as on p2p.
common="--data $DATA --model mlp:784-64-32-10 --batch 60 --max-steps 40 --optimizer sgd
        --lr 0.1 --log-every 1 --eval-every 1000 --quiet true --seed 7"
export PT_FAULT_INJECT=slow:2:40
for tr in p2p rma; do
    for s in 0 1 3; do
        name=ssp$s; [ $tr = p2p ] || name=ssp$s-$tr
        train_run $name 4 --ps-servers 1 --ps-sync ssp:$s --ps-transport $tr
        cat "$WORK/$name.jsonl.worker"* | sed 's/.*"clock": \([0-9]*\), "min_clock": \([0-9]*\).*/\1 \2/' |
            awk -v s=$s -v tr=$tr '{ n++; if ($2 < $1 - s) bad++; if ($1 - $2 > used) used = $1 - $2 }
                END { printf "ssp:%d (%s): %d worker steps, %d beyond the bound, largest clock - min_clock %d\n", s, tr, n, bad, used;
                      exit (n >= 120 && n <= 122 && bad == 0 && (s == 0 || used >= 1)) ? 0 : 1 }' ||
            fail "ssp:$s ($tr): the staleness bound was broken (or never used)"
    done
done
# BSP waits for the straggler on every step: 40 steps take at least 40 x 40 ms
train_run bsp-slow 4 --ps-servers 1
unset PT_FAULT_INJECT
t=$(grep '"event": "end"' "$WORK/bsp-slow.jsonl" | sed 's/.*"train_seconds": \([^,]*\).*/\1/')
awk -v t="$t" 'BEGIN { exit t >= 1.6 ? 0 : 1 }' || fail "bsp with a straggler took $t s < 40 x 40 ms"
echo "bsp with the straggler: $t s for 40 steps (>= 1.6 s: it waited every step)"
train_run bsp-sgd 4 --ps-servers 1
train_field "$WORK/bsp-sgd.jsonl" loss >/dev/null
"$PT_CKPT" diff "$WORK/bsp-sgd" "$WORK/ssp0" --tol 1e-5 >"$WORK/diff-ssp0" || { cat "$WORK/diff-ssp0"; fail "ssp:0 vs bsp"; }
# ssp:0 applies the W pushes of a clock one by one (in arrival order), BSP their sum: equal within
# float rounding, not bitwise, on either transport
"$PT_CKPT" diff "$WORK/bsp-sgd" "$WORK/ssp0-rma" --tol 1e-5 >"$WORK/diff-ssp0-rma" ||
    { cat "$WORK/diff-ssp0-rma"; fail "ssp:0 over rma vs bsp over p2p"; }
pass "SSP s = 0, 1, 3 keep the bound under a straggler over p2p and rma; ssp:0 = BSP with SGD (p2p: $(tail -1 "$WORK/diff-ssp0"); rma: $(tail -1 "$WORK/diff-ssp0-rma"))"

# ---- ASP with a straggler (world rank 2 sleeps 40 ms per step): training still works (test
# accuracy >= 0.5 after 150 x 3 pushes; the untrained model is at ~0.1, BSP reaches ~0.65), the fast workers do not
# wait for it (their samples/s at least 1.5x the straggler's), and the staleness histogram has
# at least three non-empty bins.
# Over rma the same checks, and its accuracy within 0.15 of the p2p run's (ASP's order of pushes
# is the machine's, so the two runs are not the same training).
export PT_FAULT_INJECT=slow:2:40
for tr in p2p rma; do
    name=asp; [ $tr = p2p ] || name=asp-$tr
    train_run $name 4 --ps-servers 1 --ps-sync asp --max-steps 150 --ps-transport $tr
    acc=$(grep '"event": "end"' "$WORK/$name.jsonl" | sed 's/.*"test_accuracy": \([^,]*\).*/\1/')
    ps=$(grep '"event": "ps"' "$WORK/$name.jsonl")
    hist=$(echo "$ps" | sed 's/.*"staleness_hist": \[\([^]]*\)\].*/\1/')
    sps=$(echo "$ps" | sed 's/.*"worker_samples_per_s": \[\([^]]*\)\].*/\1/')
    echo "asp ($tr): test accuracy $acc, staleness histogram [$hist], worker samples/s [$sps]"
    awk -v a="$acc" 'BEGIN { exit a >= 0.5 ? 0 : 1 }' || fail "asp ($tr): test accuracy $acc < 0.5"
    echo "$hist" | tr ',' '\n' | awk '$1 > 0 { n++ } END { exit n >= 3 ? 0 : 1 }' || fail "asp ($tr): staleness histogram [$hist] is trivial"
    echo "$sps" | tr ',' ' ' | awk '{ exit ($1 >= 1.5 * $2 && $3 >= 1.5 * $2) ? 0 : 1 }' || fail "asp ($tr): fast workers waited for the straggler ($sps)"
    if [ $tr = p2p ]; then acc_p2p=$acc; fi
done
unset PT_FAULT_INJECT
awk -v a="$acc" -v b="$acc_p2p" 'BEGIN { exit a >= b - 0.15 ? 0 : 1 }' || fail "asp: rma's test accuracy $acc far below p2p's $acc_p2p"
pass "ASP trains with a straggler over p2p and rma (test accuracy $acc_p2p / $acc), staleness histogram non-trivial"

# ---- two servers under ASP/SSP (W = 2): a p2p worker has 4 requests per server in flight (the
# request table once held world + 1 = 5 and overflowed), and the rma worker puts into and gets
# from both windows. ssp:1 keeps the bound (world rank 2, worker 0, sleeps 40 ms per step); asp
# applies every push (2 servers x 2 x 60, and at most W - 1 = 1 in flight per server).
export PT_FAULT_INJECT=slow:2:40
for tr in p2p rma; do
    train_run ssp1-s2-$tr 4 --ps-servers 2 --ps-sync ssp:1 --ps-transport $tr --max-steps 40
    cat "$WORK/ssp1-s2-$tr.jsonl.worker"* | sed 's/.*"clock": \([0-9]*\), "min_clock": \([0-9]*\).*/\1 \2/' |
        awk -v tr=$tr '{ n++; if ($2 < $1 - 1) bad++; if ($1 - $2 > used) used = $1 - $2 }
            END { printf "ssp:1, 2 servers (%s): %d worker steps, %d beyond the bound, largest clock - min_clock %d\n", tr, n, bad, used;
                  exit (n >= 80 && n <= 81 && bad == 0 && used >= 1) ? 0 : 1 }' ||
        fail "ssp:1 with 2 servers ($tr): the staleness bound was broken (or never used)"
    train_run asp-s2-$tr 4 --ps-servers 2 --ps-sync asp --ps-transport $tr --max-steps 60
    grep -q '"event": "ps".*"pushes_applied": 24[0-2],' "$WORK/asp-s2-$tr.jsonl" ||
        { grep '"event": "ps"' "$WORK/asp-s2-$tr.jsonl"; fail "asp with 2 servers ($tr): pushes applied"; }
done
unset PT_FAULT_INJECT
pass "ASP and SSP with 2 servers over p2p and rma"

# ---- preemption under BSP: SIGTERM on a worker (world rank 2) in the validation after step 10;
# every rank stops after step 11 with a checkpoint and exit 75; the resume ends bitwise where
# the uninterrupted run does.
common="--data $DATA --model mlp:784-64-32-10 --batch 60 --max-steps 30 --optimizer momentum
        --lr 0.05 --dropout 0.1 --log-every 1 --eval-every 10 --quiet true --seed 7"
train_run pre-full 4 --ps-servers 1
set +e
PT_FAULT_INJECT=signal-in-eval:10@2 mpirun_t 4 120 -x PT_FAULT_INJECT "$PARATRAIN" train $common \
    --ps-servers 1 --ckpt-dir "$WORK/pre" --metrics "$WORK/pre.jsonl" >"$WORK/pre.out" 2>&1
rc=$?
set -e
[ $rc = 75 ] || { cat "$WORK/pre.out"; fail "preemption: exit $rc, expected 75"; }
train_run pre 4 --ps-servers 1 --resume auto
"$PT_CKPT" diff "$WORK/pre-full" "$WORK/pre" --tol 0 >"$WORK/diff-pre" || { cat "$WORK/diff-pre"; fail "preempted + resumed vs uninterrupted"; }
pass "BSP preemption: exit 75 with a checkpoint, the resume is bitwise the uninterrupted run"

# ---- a worker that stops (SIGSTOP at step 20) is named by the server within PT_COLL_TIMEOUT and
# every rank exits 69, under BSP and ASP (p2p), and ASP and BSP over rma
args="--data $DATA --model mlp:784-32-10 --batch 60 --quiet true --eval-every 100000 --max-steps 300"
for mode in bsp:p2p asp:p2p asp:rma bsp:rma; do
    sync=${mode%:*} tr=${mode#*:}
    set +e
    PT_COLL_TIMEOUT=4 PT_FAULT_STOP=2:20:step mpirun_t 3 90 -x PT_COLL_TIMEOUT -x PT_FAULT_STOP \
        "$PARATRAIN" train $args --ps-servers 1 --ps-sync $sync --ps-transport $tr >"$WORK/hang-$sync-$tr.out" 2>&1
    rc=$?
    set -e
    [ $rc = 69 ] || { cat "$WORK/hang-$sync-$tr.out"; fail "$sync ($tr): a stopped worker: exit $rc, expected 69"; }
    grep -q "paratrain: error: rank 0: no progress for 4 s in MPI_Irecv.*waiting on rank 2" "$WORK/hang-$sync-$tr.out" ||
        { cat "$WORK/hang-$sync-$tr.out"; fail "$sync ($tr): the server did not name the stopped worker"; }
    pass "$sync ($tr): a stopped worker is named: $(grep -m1 'rank 0: no progress' "$WORK/hang-$sync-$tr.out" | sed 's/.*no progress/no progress/' | cut -c1-120)"
done

# ---- preemption under ASP: SIGTERM to a worker (world rank 3) once it has logged 20 steps
# (every step sleeps 20 ms); every rank stops soon after with a checkpoint and exit 75, and the
# run resumes from it to the end.
common="--data $DATA --model mlp:784-64-32-10 --batch 60 --max-steps 400 --optimizer sgd
        --lr 0.1 --log-every 1 --eval-every 1000 --quiet true --seed 7"
rm -f "$WORK/apre.pid."* "$WORK/apre.rc."*
set +e
(
    export OMPI_MCA_orte_abort_on_non_zero_status=0
    PT_FAULT_INJECT=step-delay:20 mpirun_t 4 120 -x PT_FAULT_INJECT sh -c \
        '"$@" & c=$!; echo $c >"$0.pid.'"$MPI_RANK_EXPR"'"; wait $c; rc=$?; echo $rc >"$0.rc.'"$MPI_RANK_EXPR"'"; exit $rc' \
        "$WORK/apre" "$PARATRAIN" train $common --ps-servers 1 --ps-sync asp --ckpt-dir "$WORK/apre" \
        --metrics "$WORK/apre.jsonl" >"$WORK/apre.out" 2>&1
) &
set -e
i=0
until [ -f "$WORK/apre.jsonl.worker2" ] && [ "$(wc -l <"$WORK/apre.jsonl.worker2")" -ge 20 ]; do
    i=$((i + 1)); [ $i -lt 600 ] || fail "asp preemption: the worker never reached step 20"; sleep 0.1
done
kill -TERM "$(cat "$WORK/apre.pid.3")"
wait
for r in 0 1 2 3; do
    rc=$(cat "$WORK/apre.rc.$r" 2>/dev/null || echo none)
    [ "$rc" = 75 ] || { cat "$WORK/apre.out"; fail "asp preemption: rank $r exit $rc, expected 75"; }
done
n=$(cat "$WORK/apre.jsonl.worker"* | wc -l)
[ "$n" -lt 1000 ] || fail "asp preemption: the workers went on ($n steps)"
step=$(sed -n 's/^step_0*\([0-9]*\)\.h5$/\1/p' "$WORK/apre/latest")
train_run apre 4 --ps-servers 1 --ps-sync asp --resume auto
grep -q '"event": "end", "step": 400' "$WORK/apre.jsonl" || fail "asp preemption: the resume did not finish"
pass "ASP preemption: exit 75 after $n worker steps with a checkpoint at step $step; the resume finishes"
