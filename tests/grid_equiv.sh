# Sourced by the grid-equivalence tests (test_tp_train.sh, test_pipeline.sh) after tests/lib.sh
# and after they set $common (flags every run shares): train a run on some grid, compare it with
# the serial run. Tolerances: per-step loss and gradient norm (relative, TOL_STEP), the end
# record's parameter fingerprint (TOL_PARAM), the final checkpoints (pt-ckpt diff, absolute,
# TOL_CKPT); WORST_* collect the largest differences seen, for the test's closing line.
TOL_STEP=${TOL_STEP:-1e-5}
TOL_PARAM=${TOL_PARAM:-1e-6}
TOL_CKPT=${TOL_CKPT:-1e-5}

# run NAME NP args...: metrics to $WORK/NAME.jsonl
run() {
    _n=$1 _np=$2
    shift 2
    # shellcheck disable=SC2086
    mpirun_t "$_np" 240 "$PARATRAIN" train $common --metrics "$WORK/$_n.jsonl" --ckpt-dir "$WORK/$_n" \
        "$@" >"$WORK/$_n.out" 2>&1 ||
        { cat "$WORK/$_n.out"; fail "training $_n"; }
}
# One line of numbers per run: the steps' losses and gradient norms, the val loss, the
# parameters' norm and projection.
summary() {
    { train_field "$1" loss; train_field "$1" grad_norm
      grep '"split": "val"' "$1" | tail -1 | sed 's/.*"loss": \([^,]*\).*/\1/'
      grep '"event": "end"' "$1" | sed 's/.*"param_norm": \([^,]*\), "param_probe": \([^}]*\)}.*/\1 \2/'
    } | tr '\n' ' '
}
# compare REF RUN: prints the largest step difference and parameter difference, fails beyond
# the tolerances
WORST_STEP=0 WORST_PARAM=0 WORST_CKPT=0
# ckpt_diff A B TOL: pt-ckpt diff of the latest checkpoints; prints max|a-b|
ckpt_diff() {
    "$PT_CKPT" diff "$WORK/$1" "$WORK/$2" --tol "$3" >"$WORK/$2.diff" 2>&1 || { cat "$WORK/$2.diff"; fail "checkpoint of $2 differs from $1 beyond $3"; }
    sed -n 's/.*max|a-b| \([^ ]*\) over.*/\1/p' "$WORK/$2.diff" | tail -1
}
compare() {
    _line=$(printf '%s\n%s\n' "$(summary "$WORK/$1.jsonl")" "$(summary "$WORK/$2.jsonl")" | awk -v ts="$TOL_STEP" -v tp="$TOL_PARAM" '
        NR == 1 { n = NF; for (i = 1; i <= NF; i++) a[i] = $i; next }
        { if (NF != n) { print "FIELDS " n " " NF; exit }
          ds = 0; for (i = 1; i <= n - 2; i++) { d = a[i] - $i; d = d < 0 ? -d : d; s = a[i] < 0 ? -a[i] : a[i]; if (s > 0) d /= s; if (d > ds) ds = d }
          norm = a[n - 1]; dn = a[n - 1] - $(n - 1); dp = a[n] - $n; dn = dn < 0 ? -dn : dn; dp = dp < 0 ? -dp : dp
          dpar = (dn > dp ? dn : dp) / norm
          printf "%.3g %.3g %s\n", ds, dpar, (ds <= ts && dpar <= tp) ? "ok" : "BAD" }')
    case "$_line" in
    *ok) ;;
    *) echo "serial: $(summary "$WORK/$1.jsonl")"; echo "$2: $(summary "$WORK/$2.jsonl")"
       fail "$2 differs from $1: step, parameter differences $_line (tolerances $TOL_STEP, $TOL_PARAM)" ;;
    esac
    _ck=$(ckpt_diff "$1" "$2" "$TOL_CKPT")
    set -- $_line "$2"
    echo "  $4: steps $1, parameters $2, checkpoint max|a-b| $_ck"
    WORST_CKPT=$(awk -v a="$WORST_CKPT" -v b="$_ck" 'BEGIN { print (b + 0 > a + 0 ? b : a) }')
    WORST_STEP=$(awk -v a="$WORST_STEP" -v b="$1" 'BEGIN { print (b > a ? b : a) }')
    WORST_PARAM=$(awk -v a="$WORST_PARAM" -v b="$2" 'BEGIN { print (b > a ? b : a) }')
}
