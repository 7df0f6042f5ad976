/* Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11). A draw is a pure function of (seed, stream, index), so initialization, shuffling and
 * dropout give the same numbers whatever the number of ranks and whatever order they are drawn. */
#ifndef PARATRAIN_RNG_H
#define PARATRAIN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The raw block function: 10 rounds on a 4x32-bit counter with a 2x32-bit key. */
void pt_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Streams keep unrelated uses of one seed apart. Parameter tensors use PT_STREAM_INIT + tensor id. */
enum {
    PT_STREAM_SHUFFLE = 1,
    PT_STREAM_DROPOUT = 2,
    PT_STREAM_SPLIT = 3,
    PT_STREAM_AUGMENT = 4,
    PT_STREAM_INIT = 1000,
};

/* Four independent 32-bit words for (seed, stream, index). */
void pt_rng_block(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]);
/* Uniform in [0, 1) with 24 random bits. */
float pt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on two words of the block). */
float pt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform integer in [0, n) without modulo bias worth mentioning (64-bit multiply-shift). */
uint64_t pt_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
