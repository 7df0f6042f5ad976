#!/bin/sh
# The fault matrix (docs/FAULTS.md): for each mode (plain DP, ZeRO-1, buckets, compression with
# error feedback and DGC, reproducible) and each fault (kill -9 and kill -STOP of one rank at a
# random step, a crash half-way through a checkpoint, a full file system during a save, SIGTERM
# during an evaluation and during a save), one cell:
#   1. a 2-rank run to step 40 with checkpoints every 10 steps gets the fault;
#   2. every rank must have exited within $BOUND seconds, with the fault's exit code, and no rank
#      may be left behind;
#   3. every complete checkpoint passes `pt-ckpt info` (all checksums), none expected is missing,
#      no temporary file is left where the save failed cleanly;
#   4. `--resume auto` runs to step 40 and its final checkpoint equals an uninterrupted run's of
#      the same mode bit for bit (`pt-ckpt diff`, tolerance 0).
# One line per cell; the table is also written to tests/work/test_fault_matrix/matrix.txt.
# FAULT_MATRIX=quick runs 2 modes x 6 faults instead of 5 x 6; FAULT_MODES and FAULT_FAULTS
# (space-separated names) pick cells by hand. kill -STOP needs every blocking
# wait to be bounded (PT_COLL_TIMEOUT): without that the other rank waits for ever and the cell
# fails at $BOUND. The stop cells run with PT_COLL_TIMEOUT=5, the others with the default.
# Runs under Open MPI and MPICH alike: every launch goes through tests/lib.sh's mpirun_t. (Under
# MPICH it once skipped with "stop cells ran past 20 s, resumed runs differed by up to 3.6e-7":
# the faulted run was started with a literal `mpirun`, Open MPI's, which ran the MPICH-built
# paratrain as two singletons of one rank each, both writing the same checkpoints.)
. "${srcdir:-.}/tests/lib.sh"
need_data
BOUND=${FAULT_BOUND:-20}
STOP_TIMEOUT=5 # PT_COLL_TIMEOUT of the stop cells: a peer silent that long ends the run (exit 69)
base="--data $DATA --model mlp:784-32-10 --batch 64 --optimizer momentum --lr 0.05 --seed 11
      --max-steps 40 --eval-every 10 --log-every 1 --quiet true"
case "${FAULT_MATRIX:-full}" in
quick) modes="dp compress" ;;
*) modes="dp zero1 buckets compress repro" ;;
esac
faults="kill9 stop crash enospc term-eval term-save"
modes=${FAULT_MODES:-$modes} faults=${FAULT_FAULTS:-$faults} # a subset by hand, e.g. to debug one cell
mode_flags() {
    case $1 in
    dp) echo "" ;;
    zero1) echo "--zero 1" ;;
    buckets) echo "--bucket-mb 0.02" ;;
    compress) echo "--compress topk:0.05 --dgc" ;;
    repro) echo "--reproducible" ;;
    esac
}
rnd() { echo $(($(od -An -N2 -tu2 /dev/urandom) % $1)); } # 0 .. $1-1
now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }
ranks_of() { pgrep -f "^[^ ]*paratrain train.*--ckpt-dir $1( |\$)" || true; }
last_step() { # the highest step of a train record in a metrics file
    s=$(grep '"event": "train"' "$1" 2>/dev/null | tail -1 | sed 's/.*"step": \([0-9]*\).*/\1/')
    echo "${s:-0}"
}
latest_step() { [ -f "$1/latest" ] && sed 's/step_0*\([0-9]*\)\.h5/\1/' "$1/latest" || echo 0; }

# tmpfs for the full-disk cells: mountable here (root, no container restriction)?
TMPFS=0
mkdir -p "$WORK/probe"
if mount -t tmpfs -o size=1m tmpfs "$WORK/probe" 2>/dev/null; then
    umount "$WORK/probe" && TMPFS=1
fi
[ $TMPFS = 1 ] || echo "note: cannot mount a tmpfs here; full-disk cells inject ENOSPC (PT_FAULT_INJECT=no-space)"

# whatever happens, no tmpfs stays mounted under tests/work and no rank of a cell runs on
cleanup() {
    for m in "$WORK"/*-tmpfs; do
        [ -d "$m" ] && mountpoint -q "$m" && umount -l "$m"
    done
    for p in $(pgrep -f "^[^ ]*paratrain train.*--ckpt-dir $WORK/" || true); do kill -CONT "$p"; kill -9 "$p"; done 2>/dev/null
    true
}
trap cleanup EXIT
: >"$WORK/matrix.txt"
failed=0
cell_fail() { # mode fault message
    echo "FAIL cell $1/$2: $3" >&2
    echo "$1 $2 FAIL $3" >>"$WORK/matrix.txt"
    failed=$((failed + 1))
}

for mode in $modes; do
    flags=$(mode_flags $mode)
    # shellcheck disable=SC2086
    mpirun_t 2 60 "$PARATRAIN" train $base $flags --ckpt-dir "$WORK/ref-$mode" >"$WORK/ref-$mode.out" 2>&1 ||
        { cat "$WORK/ref-$mode.out"; fail "$mode: reference run"; }
    ref="$WORK/ref-$mode/step_00000040.h5"
    [ -f "$ref" ] || fail "$mode: the reference run wrote no step-40 checkpoint"
    refsets=$("$PT_CKPT" info "$ref" | tail -1) # "N datasets"
    for fault in $faults; do
        cell="$mode-$fault" dir="$WORK/$mode-$fault"
        victim_rank=$(rnd 2) inject="" expect="" how="" want_latest=0
        case $fault in
        kill9 | stop) inject="step-delay:40" ;;
        crash) inject="ckpt-crash:20@$victim_rank" expect=nonzero want_latest=10 how="rank $victim_rank killed half-way through the step-20 save" ;;
        enospc) expect=1 want_latest=10 ;;
        term-eval) inject="signal-in-eval:20@$victim_rank" expect=75 want_latest=21 how="SIGTERM to rank $victim_rank in the step-20 evaluation" ;;
        term-save) inject="signal-in-save:20@$victim_rank" expect=75 want_latest=21 how="SIGTERM to rank $victim_rank in the step-20 save" ;;
        esac
        ckdir=$dir mounted=0
        if [ $fault = enospc ]; then
            if [ $TMPFS = 1 ]; then
                # room for one checkpoint and a half: the step-10 save fits, the step-20 one not
                sz=$(stat -c %s "$ref")
                ckdir="$WORK/$cell-tmpfs"
                mkdir -p "$ckdir"
                mount -t tmpfs -o size=$((sz * 3 / 2)) tmpfs "$ckdir" || fail "mount tmpfs on $ckdir"
                mounted=1
                how="tmpfs of $((sz * 3 / 2 / 1024)) KiB filled at the step-20 save"
            else
                inject="no-space:20"
                how="ENOSPC injected at the step-20 save (no tmpfs)"
            fi
        fi
        set +e
        t0=$(now)
        # shellcheck disable=SC2086
        ct=${PT_COLL_TIMEOUT:-600}
        [ $fault = stop ] && ct=$STOP_TIMEOUT
        # through mpirun_t (the configured launcher): a literal `mpirun` is Open MPI's, which
        # starts an MPICH-built paratrain as two unrelated singletons (each "rank 0 of 1")
        PT_FAULT_INJECT=$inject PT_COLL_TIMEOUT=$ct mpirun_t 2 "$BOUND" -x PT_FAULT_INJECT -x PT_COLL_TIMEOUT \
            "$PARATRAIN" train $base $flags --ckpt-every 10 --ckpt-dir "$ckdir" --metrics "$dir.jsonl" \
            >"$dir.out" 2>&1 &
        pid=$!
        tf=$t0 victims=""
        if [ $fault = kill9 ] || [ $fault = stop ]; then
            k=$((12 + $(rnd 17))) n=0 # a random step in 12..28
            while [ "$(last_step "$dir.jsonl")" -lt $k ] && [ $n -lt 400 ]; do sleep 0.02; n=$((n + 1)); done
            at=$(last_step "$dir.jsonl")
            victims=$(ranks_of "$ckdir")
            v=$(echo "$victims" | sed -n "$((victim_rank + 1))p")
            if [ -n "$v" ]; then
                if [ $fault = kill9 ]; then kill -9 "$v"; else kill -STOP "$v"; fi
            fi
            tf=$(now)
            how="kill -$([ $fault = kill9 ] && echo 9 || echo STOP) of one rank (pid $v) at step $at"
            expect=nonzero want_latest=$(((at - 1) / 10 * 10))
            [ $fault = stop ] && expect=69 # the bounded waits' exit code (docs/ARCHITECTURE.md #22)
        fi
        wait $pid
        rc=$?
        t1=$(now)
        set -e
        # nobody may be left behind (a stopped rank included); then clean up for the next cell
        left="" n=0
        while [ -n "$(ranks_of "$ckdir")" ] && [ $n -lt 30 ]; do sleep 0.1; n=$((n + 1)); done # 3 s grace
        for p in $(ranks_of "$ckdir"); do
            if kill -0 "$p" 2>/dev/null; then left="$left $p"; kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; fi
        done
        sleep 0.2
        dt=$(secs "$tf" "$t1")
        if [ $mounted = 1 ]; then # keep what the full disk holds, then free the mount
            mkdir -p "$dir" && cp -a "$ckdir/." "$dir/" && umount "$ckdir" && rmdir "$ckdir"
        fi
        if [ "$(secs "$t0" "$t1" | cut -d. -f1)" -ge "$BOUND" ]; then
            cell_fail $mode $fault "still running after ${BOUND}s ($how; exit $rc)"
            continue
        fi
        [ -z "$left" ] || { cell_fail $mode $fault "rank(s)$left left behind after mpirun exited ($how)"; continue; }
        case $expect in
        nonzero) [ $rc -ne 0 ] || { cell_fail $mode $fault "exit 0, expected a failure ($how)"; continue; } ;;
        *) [ $rc -eq "$expect" ] || { cat "$dir.out"; cell_fail $mode $fault "exit $rc, expected $expect ($how)"; continue; } ;;
        esac
        # checkpoints: every complete one intact, none missing, the failed save cleaned up
        # (complete = every checksum passes and it holds as many datasets as the reference's)
        bad=""
        for f in "$dir"/step_*.h5; do
            [ -f "$f" ] || continue
            "$PT_CKPT" info "$f" >"$dir.info" 2>&1 && [ "$(tail -1 "$dir.info")" = "$refsets" ] ||
                bad="$bad $(basename "$f")"
        done
        [ -z "$bad" ] || { cell_fail $mode $fault "damaged checkpoint(s):$bad ($how)"; continue; }
        got=$(latest_step "$dir")
        [ "$got" -ge "$want_latest" ] || { cell_fail $mode $fault "latest is step $got, expected >= $want_latest ($how)"; continue; }
        case $fault in
        crash | enospc | term-*) [ "$got" -eq "$want_latest" ] || { cell_fail $mode $fault "latest is step $got, expected $want_latest"; continue; } ;;
        esac
        if [ $fault = enospc ]; then
            grep -q "not enough space for checkpoint step 20\|cannot allocate .* No space left" "$dir.out" ||
                { cat "$dir.out"; cell_fail $mode $fault "no clear message about the full disk"; continue; }
            [ -z "$(ls -A "$dir" | grep '\.tmp$' || true)" ] || { cell_fail $mode $fault "temporary file left: $(ls -A "$dir")"; continue; }
        fi
        # resume to the end: bit for bit the uninterrupted run
        # shellcheck disable=SC2086
        mpirun_t 2 60 "$PARATRAIN" train $base $flags --ckpt-every 10 --ckpt-dir "$dir" --resume auto \
            --metrics "$dir.jsonl" >"$dir-resume.out" 2>&1 ||
            { cat "$dir-resume.out"; cell_fail $mode $fault "--resume auto failed ($how)"; continue; }
        "$PT_CKPT" diff "$dir/step_00000040.h5" "$ref" >"$dir.diff" 2>&1 ||
            { cat "$dir.diff"; cell_fail $mode $fault "resumed run differs from the uninterrupted one ($how)"; continue; }
        line="exit $rc after ${dt}s; $how; latest step $got; resumed to 40 bit for bit"
        echo "ok: cell $mode/$fault: $line"
        echo "$mode $fault ok $line" >>"$WORK/matrix.txt"
    done
done
# the table of docs/FAULTS.md: mode x fault -> exit code and seconds to exit, or FAIL
awk -v faults="$faults" 'BEGIN { n = split(faults, F, " "); printf "| mode |"; for (i = 1; i <= n; i++) printf " %s |", F[i]
        printf "\n|---|"; for (i = 1; i <= n; i++) printf "---|"; printf "\n" }
    { if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 }
      if ($3 == "ok") { t = $7; sub(/s;$/, " s", t); r[$1, $2] = "exit " $5 ", " t } else r[$1, $2] = "**FAIL**" }
    END { for (j = 1; j <= m; j++) { printf "| %s |", order[j]; for (i = 1; i <= n; i++) printf " %s |", r[order[j], F[i]]; printf "\n" } }' \
    "$WORK/matrix.txt" | tee "$WORK/matrix.md"
[ $failed -eq 0 ] || fail "$failed cell(s) of the fault matrix failed (see above)"
pass "fault matrix: every cell exited in time, kept its checkpoints and resumed bit for bit"
