/* fp32 <-> 16-bit float conversions (internal to src/comm): round to nearest even, NaN kept
 * quiet. Used by the local reductions and the low-precision allreduce. */
#ifndef PT_COMM_HALF_H
#define PT_COMM_HALF_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE fp16 in integer arithmetic, bit for bit what a hardware conversion (F16C vcvtps2ph /
 * vcvtph2ps, round to nearest even) gives, for every input (checked exhaustively against
 * _Float16). The library is built for the x86-64 baseline, which has no fp16 instructions: there
 * a _Float16 cast is a libgcc call per element (measured 3.5x slower fp16 allreduce than with
 * -march=native), whereas this inlines and vectorizes with plain SSE2 integer operations. The
 * subnormal paths add a power of two in float and are exact under FTZ/DAZ (the sum is normal;
 * fp32 subnormal inputs are below half of fp16's least subnormal and round to zero anyway). */
static inline float f16_to_f32(uint16_t h)
{
    const uint32_t exp_mask = 0x7c00u << 13;
    uint32_t o = ((uint32_t)h & 0x7fffu) << 13; /* exponent and mantissa in place */
    const uint32_t exp = o & exp_mask;
    o += (uint32_t)(127 - 15) << 23; /* rebias */
    if (exp == exp_mask) { /* Inf / NaN: exponent all ones; a NaN comes out quiet */
        o += (uint32_t)(128 - 16) << 23;
        if (h & 0x3ffu) o |= 0x400000u;
    } else if (exp == 0) {                                 /* zero / subnormal: renormalize */
        const uint32_t magic_u = 113u << 23;
        float f, magic;
        o += 1u << 23;
        memcpy(&f, &o, 4), memcpy(&magic, &magic_u, 4);
        f -= magic;
        memcpy(&o, &f, 4);
    }
    o |= ((uint32_t)h & 0x8000u) << 16;
    float r;
    memcpy(&r, &o, 4);
    return r;
}
static inline uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = u & 0x80000000u;
    u ^= sign;
    uint32_t o;
    if (u >= (uint32_t)(127 + 16) << 23) /* >= 65536, Inf or NaN */
        o = u > 0x7f800000u ? 0x7e00u | ((u >> 13) & 0x3ffu) : 0x7c00u; /* NaN quiet, payload kept */
    else if (u < 113u << 23) { /* result subnormal or zero: let the FPU round (to nearest even) */
        const uint32_t magic_u = ((127 - 15) + (23 - 10) + 1) << 23;
        float x, magic;
        memcpy(&x, &u, 4), memcpy(&magic, &magic_u, 4);
        x += magic;
        memcpy(&o, &x, 4);
        o -= magic_u;
    } else {
        const uint32_t odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd; /* rebias, round to nearest even */
        o = u >> 13;
    }
    return (uint16_t)(o | (sign >> 16));
}

#endif
