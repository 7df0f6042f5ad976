#!/bin/sh
# The low-precision GEMM variants (include/paratrain/lowp.h) against OpenBLAS cblas_sgemm on fp32
# and PyTorch's matmul (fp32, bf16; fp16 where torch has it), at the shapes the models run: mlp
# 784-1024-1024-10 at batch 128 (forward y = x W^T, backward dW = dz^T x and dx = dz W), gpt d256
# at 16 x 128 tokens (qkv, attention out, mlp up and down), a square 1024. 2 threads.
# REPEATS rounds; each round runs pt-bench-lowp once (every method in turn on each shape) and the
# PyTorch script once, so the methods interleave. GFLOP/s per sample; the table gives the median,
# min and max over the rounds. The CPU model, its bf16/fp16/AMX flags and the load are recorded.
# Both sides run with OMP_WAIT_POLICY=PASSIVE (PyTorch must, on these shared machines; paratrain's
# libgomp and OpenBLAS threads get the same treatment; WAIT=active to leave it unset for ours).
#   benchmarks/bench_lowp_gemm.sh [REPEATS]
#     -> table on stdout, benchmarks/out/lowp_gemm_samples.csv, benchmarks/out/lowp_gemm.csv
set -eu
cd "$(dirname "$0")/.."
REPEATS=${1:-5}
THREADS=${THREADS:-2}
MS=${MS:-100}
PY=${PY:-/usr/bin/python3}
mkdir -p benchmarks/out
raw=benchmarks/out/lowp_gemm_samples.csv
sum=benchmarks/out/lowp_gemm.csv
[ -x ./pt-bench-lowp ] || { echo "build first: make pt-bench-lowp" >&2; exit 1; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|f16c|fma|avx512f|avx512_bf16|avx512_fp16|amx_bf16|amx_tile)$' | tr '\n' ' ')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "shape,ta,tb,m,n,k,method,gflops,round" >"$raw"
for r in $(seq "$REPEATS"); do
    env $( [ "${WAIT:-passive}" = passive ] && echo OMP_WAIT_POLICY=PASSIVE ) \
        OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS timeout 600 ./pt-bench-lowp --reps 1 --ms "$MS" |
        sed "s/\$/,$r/" >>"$raw"
    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS timeout 600 "$PY" benchmarks/torch_lowp_matmul.py \
        --threads "$THREADS" --reps 1 --ms "$MS" 2>/dev/null | sed "s/\$/,$r/" >>"$raw" ||
        echo "bench_lowp_gemm: the PyTorch peer failed in round $r" >&2
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
"$PY" - "$raw" "$sum" "$cpu" "$flags" "$load0" "$load1" "$THREADS" "$REPEATS" "${WAIT:-passive}" <<'PYEOF'
import collections, csv, statistics, sys
raw, out, cpu, flags, load0, load1, threads, reps, wait = sys.argv[1:]
s = collections.OrderedDict()
meths = []
for r in csv.DictReader(open(raw)):
    key = (r["shape"], r["ta"], r["tb"], r["m"], r["n"], r["k"])
    s.setdefault(key, collections.defaultdict(list))[r["method"]].append(float(r["gflops"]))
    if r["method"] not in meths:
        meths.append(r["method"])
with open(out, "w") as f:
    f.write(f"# cpu={cpu}; flags={flags.strip()}; threads={threads}; rounds={reps}; paratrain OMP wait {wait}; load {load0} -> {load1}\n")
    f.write("shape,ta,tb,m,n,k,method,median_gflops,min_gflops,max_gflops,samples\n")
    for key, d in s.items():
        for m in meths:
            if m in d:
                v = d[m]
                f.write(",".join(key) + f",{m},{statistics.median(v):.2f},{min(v):.2f},{max(v):.2f},{len(v)}\n")
print(f"CPU {cpu}; flags: {flags.strip()}; {threads} threads; {reps} rounds; paratrain OMP wait {wait}; load {load0} -> {load1}")
print("GFLOP/s, median [min-max]")
print("| shape (op m n k) | " + " | ".join(meths) + " |")
print("|---" * (len(meths) + 1) + "|")
for key, d in s.items():
    name, ta, tb, m, n, k = key
    op = ("T" if ta == "1" else "N") + ("T" if tb == "1" else "N")
    cells = []
    for me in meths:
        v = d.get(me)
        cells.append(f"{statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]" if v else "-")
    print(f"| {name} ({op} {m} {n} {k}) | " + " | ".join(cells) + " |")
PYEOF
