/* CUDA dense entries: GEMM through cuBLAS. cuBLAS is column-major and the backend row-major: a
 * row-major M x N matrix is its column-major transpose, so C = op(A) op(B) is computed as
 * C^T = op(B)^T op(A)^T, i.e. cuBLAS with the operands swapped (B first) and m, n exchanged.
 * Deterministic mode (--reproducible): the pedantic FP32 compute type (no TF32, no reduced
 * precision) and the default algorithm, which cuBLAS keeps fixed for a shape on one stream. */
#include "cuda_common.h"

pt_status pt_cuda_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return PT_OK;
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasComputeType_t ct =
        pt_cuda_deterministic() ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    PT_CUBLAS_CHECK(cublasGemmEx(pt_cuda_blas(), opb, opa, n, m, k, &alpha, b, CUDA_R_32F, ldb, a,
                                 CUDA_R_32F, lda, &beta, c, CUDA_R_32F, ldc, ct,
                                 CUBLAS_GEMM_DEFAULT));
    return PT_OK;
}

void pt_cuda_register_dense(pt_backend *be) { be->gemm = pt_cuda_gemm; }
