#!/bin/sh
# The programs' interface: --help, a config file equals the same flags bit for bit, flags override
# the file, the metrics log has its documented records, and `paratrain eval` of the final
# checkpoint reproduces the test accuracy that training reported.
. "${srcdir:-.}/tests/lib.sh"
need_data
"$PARATRAIN" --help >"$WORK/help" || fail "--help exit code"
for opt in --data --model --optimizer --lr --batch --ckpt-dir --resume --metrics --allreduce; do
    grep -q -- "$opt" "$WORK/help" || fail "--help does not mention $opt"
done
"$PARATRAIN" train --help | grep -q -- "--schedule" || fail "train --help"
"$PARATRAIN" --version | grep -q "paratrain [0-9]" || fail "--version"

cat >"$WORK/run.conf" <<CONF
# a config file: the same options as the flags
data = $DATA
model = mlp:784-24-10
optimizer = adam
lr = 0.003
batch = 50
max-steps = 25
seed = 11
quiet = true
CONF
mpirun_t 2 60 "$PARATRAIN" train --config "$WORK/run.conf" --ckpt-dir "$WORK/a" \
    --metrics "$WORK/a.jsonl" --log-every 5 >"$WORK/a.out" 2>&1 || { cat "$WORK/a.out"; fail "config file run"; }
mpirun_t 2 60 "$PARATRAIN" train --data "$DATA" --model mlp:784-24-10 --optimizer adam --lr 0.003 \
    --batch 50 --max-steps 25 --seed 11 --quiet true --ckpt-dir "$WORK/b" >"$WORK/b.out" 2>&1 || fail "flags run"
"$PT_CKPT" diff "$WORK/a" "$WORK/b" >/dev/null || fail "config file and flags differ"
mpirun_t 2 60 "$PARATRAIN" train --config "$WORK/run.conf" --lr 0.01 --ckpt-dir "$WORK/c" >/dev/null 2>&1 || fail "override run"
if "$PT_CKPT" diff "$WORK/a" "$WORK/c" >/dev/null; then fail "--lr did not override the config file"; fi
pass "config file = flags; flags override the file"

# metrics records
for ev in start train eval checkpoint end; do
    grep -q "\"event\": \"$ev\"" "$WORK/a.jsonl" || fail "metrics lack a '$ev' record"
done
[ "$(grep -c '"event": "train"' "$WORK/a.jsonl")" = 5 ] || fail "expected 5 train records (25 steps / 5)"
grep '"event": "train"' "$WORK/a.jsonl" | grep -q '"samples_per_s": [0-9]' || fail "train record lacks samples_per_s"
grep '"split": "test"' "$WORK/a.jsonl" | grep -q '"accuracy": 0\.' || fail "no test accuracy record"
if command -v python3 >/dev/null && python3 -c 'import json' 2>/dev/null; then
    python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$WORK/a.jsonl" ||
        fail "metrics file is not valid JSON lines"
fi
pass "metrics records"

# eval of the final checkpoint reproduces the reported test accuracy, at 1 and 3 ranks
want=$(sed -n 's/.*"split": "test".*"accuracy": \([0-9.]*\).*/\1/p' "$WORK/a.jsonl")
for np in 1 3; do
    mpirun_t $np 60 "$PARATRAIN" eval --ckpt "$WORK/a" >"$WORK/eval$np.out" 2>&1 || { cat "$WORK/eval$np.out"; fail "eval at np=$np"; }
    got=$(sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' "$WORK/eval$np.out")
    awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; exit (d < 1e-4 && d > -1e-4) ? 0 : 1 }' ||
        fail "eval at np=$np gives $got, training reported $want"
done
pass "eval reproduces test accuracy $want"

# early stopping end to end: with lr 0 the validation accuracy never improves after the first
# evaluation (step 5), so patience 2 stops training at the evaluation of step 15.
mpirun_t 2 60 "$PARATRAIN" train --data "$DATA" --model mlp:784-16-10 --batch 64 --optimizer sgd \
    --lr 0 --max-steps 100 --eval-every 5 --early-stop 2 --quiet true --metrics "$WORK/es.jsonl" \
    >"$WORK/es.out" 2>&1 || { cat "$WORK/es.out"; fail "early-stop run"; }
grep '"event": "end"' "$WORK/es.jsonl" | grep -q '"step": 15,' ||
    fail "early stopping ended at: $(grep '"event": "end"' "$WORK/es.jsonl")"
pass "early stopping stops after 2 evaluations without improvement"

# --help documents the exit codes, the ranges and the environment
grep -q "^Exit codes" "$WORK/help" || fail "--help does not state the exit codes"
grep -q "PT_COLL_TIMEOUT=SECONDS: no progress in a wait for a peer that long ends the run, exit code 69 (default 600; 0: off)" "$WORK/help" ||
    fail "--help does not document PT_COLL_TIMEOUT and its exit code 69"
grep -q "69 a peer stopped responding" "$WORK/help" || fail "--help does not list exit code 69"
grep -q -- "--eval-batch N .*(allowed: 0\.\." "$WORK/help" || fail "--help does not show the range of --eval-batch"
pass "--help: exit codes, ranges, PT_COLL_TIMEOUT"

tiny="--data $DATA --model mlp:784-16-10 --batch 64 --log-every 2"
# --ckpt-every: the log and the metrics name each file written (they said "(null)")
mpirun_t 2 60 "$PARATRAIN" train $tiny --max-steps 4 --ckpt-every 2 --ckpt-dir "$WORK/ce" \
    --metrics "$WORK/ce.jsonl" >"$WORK/ce.out" 2>&1 || { cat "$WORK/ce.out"; fail "--ckpt-every run"; }
if grep -q "(null)" "$WORK/ce.out" "$WORK/ce.jsonl"; then fail "a checkpoint path is (null)"; fi
for s in 2 4; do
    f="$WORK/ce/step_0000000$s.h5"
    [ -f "$f" ] || fail "no checkpoint $f"
    grep '"event": "checkpoint"' "$WORK/ce.jsonl" | grep -q "\"step\": $s,.*\"path\": \"$f\"" ||
        fail "no checkpoint record naming $f: $(grep checkpoint "$WORK/ce.jsonl")"
    grep -q "checkpoint $f" "$WORK/ce.out" || fail "the log does not name $f"
done
pass "--ckpt-every names every checkpoint file"

# --stop-at ends with what it did, not with a "test accuracy nan" it never measured
mpirun_t 2 60 "$PARATRAIN" train $tiny --max-steps 6 --stop-at 3 --ckpt-dir "$WORK/sa" \
    >"$WORK/sa.out" 2>&1 || { cat "$WORK/sa.out"; fail "--stop-at run"; }
grep -q "stopped at step 3 (--stop-at): checkpoint .*step_00000003.h5" "$WORK/sa.out" ||
    { cat "$WORK/sa.out"; fail "--stop-at: no line saying where it stopped"; }
if grep -qi "accuracy nan" "$WORK/sa.out"; then cat "$WORK/sa.out"; fail "--stop-at reports a NaN accuracy"; fi
# resuming a finished run trains nothing and leaves its final checkpoint as it was
mpirun_t 2 60 "$PARATRAIN" train $tiny --max-steps 6 --ckpt-dir "$WORK/sa" --resume latest \
    >"$WORK/sa2.out" 2>&1 || { cat "$WORK/sa2.out"; fail "resuming --stop-at"; }
final="$WORK/sa/step_00000006.h5"
[ -f "$final" ] || fail "no final checkpoint"
cp "$final" "$WORK/final-copy.h5"
inode=$(stat -c %i "$final") files=$(ls "$WORK/sa" | wc -l)
mpirun_t 2 60 "$PARATRAIN" train $tiny --max-steps 6 --ckpt-dir "$WORK/sa" --resume latest \
    --metrics "$WORK/sa3.jsonl" >"$WORK/sa3.out" 2>&1 || { cat "$WORK/sa3.out"; fail "resuming a finished run"; }
grep -q "nothing to train: the checkpoint already holds all 6 steps" "$WORK/sa3.out" ||
    { cat "$WORK/sa3.out"; fail "resuming a finished run does not say so"; }
[ "$(stat -c %i "$final")" = "$inode" ] && cmp -s "$final" "$WORK/final-copy.h5" ||
    fail "resuming a finished run rewrote its final checkpoint"
[ "$(ls "$WORK/sa" | wc -l)" = "$files" ] || fail "resuming a finished run wrote files: $(ls "$WORK/sa")"
if grep -q '"event": "\(train\|checkpoint\|end\)"' "$WORK/sa3.jsonl"; then fail "a finished run recorded training"; fi
pass "--stop-at says where it stopped; a finished run resumed writes nothing"

# The metrics file is strict JSON: a number printf would write as nan or inf is null. Without a
# test split the end record's test_accuracy has no value (it was written as nan).
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    copy_data "$WORK/notest"
    /usr/bin/python3 - "$WORK/notest" <<'PY'
import sys, h5py
# an empty test split, as pt-prep writes one: a single shard of 0 samples
d = sys.argv[1]
with h5py.File(d + "/index.h5", "r+") as ix:
    name = ix["test/files"][0]
    for k, v in (("files", [name]), ("counts", [0])):
        dt = ix["test"][k].dtype
        del ix["test"][k]
        ix["test"].create_dataset(k, data=v, dtype=dt)
with h5py.File(d + "/" + name.decode(), "r+") as f:
    for k in ("images", "labels", "crc32"):
        shape, dt = (0,) + f[k].shape[1:], f[k].dtype
        del f[k]
        f.create_dataset(k, shape=shape, dtype=dt)
    f.attrs["count"] = f.attrs["count"].dtype.type(0)
PY
    mpirun_t 2 60 "$PARATRAIN" train --data "$WORK/notest" --model mlp:784-16-10 --batch 64 --max-steps 4 \
        --metrics "$WORK/notest.jsonl" >"$WORK/notest.out" 2>&1 || { cat "$WORK/notest.out"; fail "training without a test split"; }
    /usr/bin/python3 - "$WORK/notest.jsonl" <<'PY' || fail "the metrics file is not strict JSON"
import json, sys
def bad(c): sys.exit("non-JSON number %s" % c)   # json would accept NaN/Infinity otherwise
recs = [json.loads(l, parse_constant=bad) for l in open(sys.argv[1])]
end = [r for r in recs if r["event"] == "end"]
assert len(end) == 1 and end[0]["test_accuracy"] is None, end
PY
    if grep -qi "accuracy nan" "$WORK/notest.out"; then cat "$WORK/notest.out"; fail "reports a NaN test accuracy"; fi
    pass "metrics: no test split -> \"test_accuracy\": null, strict JSON"
fi

# Threads per rank. Unset OMP_NUM_THREADS: 2 ranks (--bind-to none) share this process's CPUs,
# which nproc counts independently, so each takes half. Set, it is obeyed, and 2 ranks x nproc
# threads exceed the node's CPUs: one warning, from rank 0.
ncpu=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc obeys OMP_NUM_THREADS otherwise
want=$((ncpu / 2))
[ $want -ge 1 ] || want=1
(
    unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS
    mpirun_t 2 60 "$PARATRAIN" train $tiny --max-steps 2 >"$WORK/thr.out" 2>&1
) || { cat "$WORK/thr.out"; fail "run with OMP_NUM_THREADS unset"; }
grep -q "^threads: $want per rank (OMP_NUM_THREADS unset; $ncpu CPUs\? in this rank's mask, shared by 2 ranks" \
    "$WORK/thr.out" || { cat "$WORK/thr.out"; fail "OMP_NUM_THREADS unset: expected $want thread(s) per rank"; }
if [ $((2 * want)) -le "$ncpu" ] && grep -q "threads on a node with" "$WORK/thr.out"; then
    cat "$WORK/thr.out"; fail "warned about oversubscription with $want thread(s) x 2 ranks on $ncpu CPUs"
fi
OMP_NUM_THREADS=$ncpu mpirun_t 2 60 "$PARATRAIN" train $tiny --max-steps 2 >"$WORK/thr2.out" 2>&1 ||
    { cat "$WORK/thr2.out"; fail "run with OMP_NUM_THREADS=$ncpu"; }
grep -q "threads: $ncpu per rank (OMP_NUM_THREADS;" "$WORK/thr2.out" || { cat "$WORK/thr2.out"; fail "OMP_NUM_THREADS=$ncpu not obeyed"; }
[ "$(grep -c "warning: $((2 * ncpu)) threads on a node with $ncpu CPUs" "$WORK/thr2.out")" = 1 ] ||
    { cat "$WORK/thr2.out"; fail "expected one oversubscription warning"; }
pass "threads: $want per rank by default on $ncpu CPUs; OMP_NUM_THREADS=$ncpu obeyed with one warning"
