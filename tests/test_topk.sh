#!/bin/sh
# Top-k selection (tests/t_topk) under every ISA level this CPU supports (the filter pass of
# src/comm/topk.c has an AVX2 kernel and a scalar one), at 1 and 2 OpenMP threads (t_topk sets
# them). Levels the CPU lacks are reported and not run.
. "${srcdir:-.}/tests/lib.sh"
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
for isa in baseline avx2; do
    if [ "$isa" = avx2 ] && ! { has avx2 && has fma; }; then
        echo "not run: PT_CPU_ISA=avx2 (this CPU lacks it)"
        continue
    fi
    OMP_WAIT_POLICY=PASSIVE PT_CPU_ISA=$isa timeout -k 5 120 "$top_builddir/tests/t_topk" >"$WORK/t_topk.$isa.out" 2>&1 ||
        { cat "$WORK/t_topk.$isa.out"; fail "t_topk under PT_CPU_ISA=$isa"; }
    grep -q "^top-k: filter kernels $isa" "$WORK/t_topk.$isa.out" ||
        { cat "$WORK/t_topk.$isa.out"; fail "t_topk did not run the $isa kernels"; }
    cat "$WORK/t_topk.$isa.out"
    pass "t_topk under PT_CPU_ISA=$isa"
done
