#!/bin/sh
# Throughput of the portable build next to the build it replaces, side by side in one run:
#   before    REF (default main) as it is there: everything compiled with -march=native
#   native    this tree, configure --enable-native (-march=native + run-time dispatch)
#   portable  this tree, default configure (baseline x86-64 + AVX2/AVX-512 kernels from CPUID)
# Also the time of one 25 MB fp16 / bf16 / dense-ring allreduce at np 2 (pt-bench-compress,
# median of its 5 repetitions, then median over REPEATS): fp32 <-> fp16 conversion has no F16C
# instructions at the x86-64 baseline. Each is a build of its own under build-bench/. Training samples/s (the `end` record: step time
# only) of the MLP 784-1024-1024-10 (SGD momentum, MLP_STEPS=400) and the CNN (AdamW, CNN_STEPS=40), batch
# 128, 1 rank x 2 threads; the three builds alternate within every repeat, and the table shows
# medians of REPEATS, min-max, and the ratio to `before`. The CPU model (lscpu) heads the output.
#   benchmarks/bench_portable.sh [REPEATS [REF]]   -> table on stdout, benchmarks/out/portable.csv
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
REPEATS=${1:-5}
REF=${2:-main}
B=$top/build-bench
OUT=$top/benchmarks/out
mkdir -p "$B" "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
log=$B/build.log
: >"$log"
# sources: REF from git, this tree as it is (tracked + untracked, not ignored)
if [ ! -x "$B/before/paratrain" ] || [ "$(cat "$B/before/.ref" 2>/dev/null)" != "$(git rev-parse "$REF")" ]; then
    rm -rf "$B/before" && mkdir -p "$B/before"
    git archive "$REF" | tar -xf - -C "$B/before"
    (cd "$B/before" && ./autogen.sh && ./configure && make -j2 paratrain pt-prep pt-bench-compress) >>"$log" 2>&1 ||
        { tail -20 "$log"; echo "bench_portable: build of $REF failed"; exit 1; }
    git rev-parse "$REF" >"$B/before/.ref"
fi
rm -rf "$B/src" && mkdir -p "$B/src"
git ls-files -co --exclude-standard | grep -v '^build-' | tar -cf - -T - | tar -xf - -C "$B/src"
(cd "$B/src" && ./autogen.sh) >>"$log" 2>&1
for cfg in native portable; do
    mkdir -p "$B/$cfg"
    flag=""
    [ $cfg = native ] && flag=--enable-native
    (cd "$B/$cfg" && { [ -f Makefile ] && [ "$(cat .flag 2>/dev/null)" = "$flag" ] || { ../src/configure $flag && echo "$flag" >.flag; }; } &&
        make -j2 paratrain pt-prep pt-bench-compress) >>"$log" 2>&1 || { tail -20 "$log"; echo "bench_portable: build $cfg failed"; exit 1; }
done
# Each build reads data its own pt-prep wrote: REF may predate a change of the shard format
# (version 2 added per-sample checksums).
for b in before portable; do
    [ -f "$B/$b/data/index.h5" ] || "$B/$b/pt-prep" fashion-mnist --out "$B/$b/data" >/dev/null
done
data_of() { [ "$1" = before ] && echo "$B/before/data" || echo "$B/portable/data"; }
DATA=$B/portable/data

# run BUILD MODEL STEPS OPTIMIZER LR -> samples/s
run() {
    m=$(mktemp)
    OMP_NUM_THREADS=2 mpirun -np 1 --bind-to none -x OMP_NUM_THREADS "$B/$1/paratrain" train \
        --data "$(data_of "$1")" --model "$2" --batch 128 --optimizer "$4" --lr "$5" --max-steps "$3" \
        --eval-every 100000 --log-every 100000 --quiet true --validate-data false --metrics "$m" \
        >"$B/last-$1.out" 2>&1 || { cat "$B/last-$1.out" >&2; rm -f "$m"; echo 0; return; }
    sed -n 's/.*"event": "end".*"samples_per_s": \([0-9.]*\).*/\1/p' "$m"
    rm -f "$m"
}
csv=$OUT/portable.csv
echo "model,repeat,build,samples_per_s" >"$csv"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
isa=$(OMP_NUM_THREADS=1 "$B/portable/paratrain" train --data "$DATA" --model cnn --batch 8 --max-steps 1 \
    --eval-every 100000 --quiet true --validate-data false 2>&1 | sed -n 's/.*\(cpu: [a-z0-9]* kernels[^)]*)\).*/\1/p' | head -1)
for r in $(seq "$REPEATS"); do
    for spec in "mlp:784-1024-1024-10 ${MLP_STEPS:-400} momentum 0.05" "cnn ${CNN_STEPS:-40} adamw 1e-3"; do
        set -- $spec
        for b in before native portable; do
            echo "${1%%:*},$r,$b,$(run $b "$1" "$2" "$3" "$4")" >>"$csv"
        done
    done
done
# compress BUILD -> "fp16_ms bf16_ms ring_ms"
compress() {
    mpirun -np 2 --bind-to none "$B/$1/pt-bench-compress" --bytes 25 --reps 5 2>/dev/null |
        awk '/^fp16 / { f = $2 } /^bf16 / { b = $2 } /^dense ring / { r = $3 } END { print f, b, r }'
}
ccsv=$OUT/portable_compress.csv
echo "repeat,build,fp16_ms,bf16_ms,ring_ms" >"$ccsv"
for r in $(seq "$REPEATS"); do
    for b in before native portable; do
        echo "$r,$b,$(compress $b | tr ' ' ,)" >>"$ccsv"
    done
done
echo "CPU: $cpu ($(nproc) CPUs); flags: $(grep -o -w 'avx2\|avx512f\|avx512_fp16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "portable build: ${isa:-cpu line not found}"
echo "before = $REF ($(git rev-parse --short "$REF")), -march=native; 1 rank x 2 threads, batch 128; medians of $REPEATS"
echo "| model | before | native | portable | native / before | portable / before | portable min-max |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mdl in mlp cnn; do
    awk -F, -v m=$mdl '
        function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                         if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                       return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        $1 == m { n[$3]++; v[$3, n[$3]] = $4 }
        END { for (b in n) { for (i = 1; i <= n[b]; i++) t[i] = v[b, i]; md[b] = med(t, n[b]);
                             lo[b] = t[1]; hi[b] = t[n[b]] }
              printf "| %s | %.0f | %.0f | %.0f | %.3f | %.3f | %.0f-%.0f |\n", m, md["before"],
                     md["native"], md["portable"], md["native"] / md["before"],
                     md["portable"] / md["before"], lo["portable"], hi["portable"] }' "$csv"
done
echo
echo "25 MB allreduce at np 2, ms (lower is better), medians of $REPEATS runs of pt-bench-compress --reps 5"
echo "| method | before | native | portable | portable / before |"
echo "|---|---:|---:|---:|---:|"
for col in 3:fp16 4:bf16 5:dense_ring; do
    awk -F, -v c=${col%%:*} -v name=${col#*:} '
        function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                         if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                       return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        NR > 1 { n[$2]++; v[$2, n[$2]] = $c }
        END { for (b in n) { for (i = 1; i <= n[b]; i++) t[i] = v[b, i]; md[b] = med(t, n[b]) }
              printf "| %s | %.2f | %.2f | %.2f | %.3f |\n", name, md["before"], md["native"],
                     md["portable"], md["portable"] / md["before"] }' "$ccsv"
done
