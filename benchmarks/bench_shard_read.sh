#!/bin/sh
# What verifying the shard checksums costs (docs/DATA_FORMAT.md, format version 2), verification
# on and off side by side in one run (PT_SHARD_VERIFY=0 turns it off), medians of REPEATS:
#   1. the reader alone (tests/tools/shard_read_bench): one process reads the whole Fashion-MNIST
#      training split (54000 samples) in shuffled batches of 128, and times the start scan
#      (--validate-data, which reads 1/p of every shard once);
#   2. training: MLP 784-1024-1024-10, batch 128, 1 rank x 2 threads, STEPS steps: samples/s and
#      the data-read seconds per step of paratrain's `end` record.
#   benchmarks/bench_shard_read.sh [REPEATS]  -> table on stdout, benchmarks/out/shard_read.csv
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-5}
STEPS=${STEPS:-200}
make -s tests/tools/shard_read_bench >/dev/null
mkdir -p benchmarks/out
csv=benchmarks/out/shard_read.csv
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "# cpu: $cpu" >"$csv"
echo "what,repeat,verify,open_validate_s,read_s,samples,samples_per_s,data_s_per_step" >>"$csv"
OMP_NUM_THREADS=1 mpirun -np 1 ./tests/tools/shard_read_bench "$DATA" 128 "$REPEATS" |
    awk -F, '{ printf "reader,%d,%s,%s,%s,%s,,\n", int((NR + 1) / 2), $1, $2, $3, $4 }' >>"$csv"
end_field() { sed -n "s/.*\"$1\": \([0-9.eE+-]*\).*/\1/p" "$PT_LAST_END"; }
for r in $(seq "$REPEATS"); do
    for v in 1 0; do
        export PT_SHARD_VERIFY=$v
        sps=$(pt_samples_per_s 1 2 128 || true)
        ds=$(end_field data_s)
        echo "train,$r,$v,,,,$sps,$(echo "$ds $STEPS" | awk '{ print $1 / $2 }')" >>"$csv"
    done
done

med() { sort -g | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { grep "^$1,[0-9]*,$2," "$csv" | cut -d, -f"$3" | med; }
echo "CPU: $cpu; medians of $REPEATS"
r1=$(col reader 1 5) r0=$(col reader 0 5) n=$(col reader 1 6)
o1=$(col reader 1 4) o0=$(col reader 0 4)
t1=$(col train 1 7) t0=$(col train 0 7) d1=$(col train 1 8) d0=$(col train 0 8)
printf '%-44s %12s %12s %9s\n' "" "verify on" "verify off" "cost"
awk -v a="$r1" -v b="$r0" -v n="$n" 'BEGIN { printf "%-44s %12.1f %12.1f %8.1f%%\n", "reader: us per sample (batches of 128)", 1e6 * a / n, 1e6 * b / n, 100 * (a / b - 1) }'
awk -v a="$o1" -v b="$o0" 'BEGIN { printf "%-44s %12.3f %12.3f %8.1f%%\n", "start scan (--validate-data), s", a, b, 100 * (a / b - 1) }'
awk -v a="$d1" -v b="$d0" 'BEGIN { printf "%-44s %12.2f %12.2f %8.1f%%\n", "training: data read, ms per step", 1e3 * a, 1e3 * b, 100 * (a / b - 1) }'
awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%-44s %12.1f %12.1f %8.1f%%\n", "training: samples/s (mlp 1024-1024, 1x2)", a, b, 100 * (b / a - 1) }'
echo "CSV: $csv"
