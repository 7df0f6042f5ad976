#!/bin/sh
# The CPU kernels under every ISA level this CPU supports (PT_CPU_ISA=baseline|avx2|avx512, see
# include/paratrain/cpu.h): t_conv checks that the dispatch picked the level it was asked for and
# that those kernels match a double-precision reference; t_gradcheck and t_models check every op
# (GEMM through OpenBLAS, the convolutions through the chosen kernels) against finite
# differences; t_compress and t_comm check the 16-bit loops of src/comm; t_ew_isa checks that the
# CPU backend's elementwise table is the level asked for and that every level this CPU has gives
# the baseline's bits for every entry (kernels/cpu/elementwise_kernels.c). Levels the CPU lacks
# are reported and not run.
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
    for t in t_conv t_ew_isa t_gradcheck t_models; do
        PT_CPU_ISA=$isa timeout -k 5 300 "$top_builddir/tests/$t" >"$WORK/$t.$isa.out" 2>&1 ||
            { cat "$WORK/$t.$isa.out"; fail "$t under PT_CPU_ISA=$isa"; }
    done
    # the 16-bit loops of src/comm/half_kernels.c: t_compress checks the fp16/bf16 allreduce bit
    # for bit against round-sum-round (2 threads: each converts its own chunk), t_comm the fp16
    # and bf16 local reductions of every algorithm
    PT_CPU_ISA=$isa OMP_NUM_THREADS=2 mpirun_t 2 300 -x PT_CPU_ISA -x OMP_NUM_THREADS \
        "$top_builddir/tests/t_compress" >"$WORK/t_compress.$isa.out" 2>&1 ||
        { cat "$WORK/t_compress.$isa.out"; fail "t_compress at np=2 under PT_CPU_ISA=$isa"; }
    PT_CPU_ISA=$isa mpirun_t 2 300 -x PT_CPU_ISA "$top_builddir/tests/t_comm" >"$WORK/t_comm.$isa.out" 2>&1 ||
        { cat "$WORK/t_comm.$isa.out"; fail "t_comm at np=2 under PT_CPU_ISA=$isa"; }
    grep "^conv kernels:" "$WORK/t_conv.$isa.out"
    grep "^elementwise kernels:" "$WORK/t_ew_isa.$isa.out"
    pass "t_conv, t_ew_isa, t_gradcheck, t_models, t_compress, t_comm under PT_CPU_ISA=$isa"
done
