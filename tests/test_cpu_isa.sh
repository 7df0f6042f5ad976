#!/bin/sh
# The CPU kernels under every ISA level this CPU supports (PT_CPU_ISA=baseline|avx2|avx512, see
# include/paratrain/cpu.h): t_conv checks that the dispatch picked the level it was asked for and
# that those kernels match a double-precision reference; t_gradcheck and t_models check every op
# (GEMM through OpenBLAS, the convolutions through the chosen kernels) against finite
# differences. Levels the CPU lacks are reported and not run.
. "${srcdir:-.}/tests/lib.sh"
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
levels=baseline
if has avx2 && has fma; then levels="$levels avx2"; fi
if has avx2 && has fma && has avx512f; then levels="$levels avx512"; fi
for isa in baseline avx2 avx512; do
    case " $levels " in
    *" $isa "*) ;;
    *) echo "not run: PT_CPU_ISA=$isa (this CPU lacks it)"; continue ;;
    esac
    for t in t_conv t_gradcheck t_models; do
        PT_CPU_ISA=$isa timeout -k 5 300 "$top_builddir/tests/$t" >"$WORK/$t.$isa.out" 2>&1 ||
            { cat "$WORK/$t.$isa.out"; fail "$t under PT_CPU_ISA=$isa"; }
    done
    grep "^conv kernels:" "$WORK/t_conv.$isa.out"
    pass "t_conv, t_gradcheck, t_models under PT_CPU_ISA=$isa"
done
