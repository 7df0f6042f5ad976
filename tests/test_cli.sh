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
