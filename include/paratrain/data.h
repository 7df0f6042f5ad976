/* Data on HDF5: shard files, their index, a reader where each rank reads only the samples it
 * trains on, and the distributed sampler. Layout (docs/DATA_FORMAT.md has the full description):
 *
 *   DIR/index.h5                 attrs: format_version, source, num_classes, channels, height,
 *                                width; groups /train /val /test, each with `files` and `counts`
 *   DIR/<split>/shard_NNNNN.h5   /images (N, C, H, W) uint8 or float32, /labels (N) int32,
 *                                /crc32 (N) uint32: per-sample checksum (pt_shard_sample_crc);
 *                                attrs: format_version, source, split, count, first_index
 *
 * The sampler permutes sample indices with Philox keyed by (seed, epoch): the global batch of
 * every step is the same for any number of ranks; a rank trains on a contiguous share of it. */
#ifndef PARATRAIN_DATA_H
#define PARATRAIN_DATA_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "paratrain/error.h"
#include "paratrain/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: per-sample CRC-32 (/crc32 in every shard). Version 1 shards are refused (re-run pt-prep). */
#define PT_DATA_FORMAT_VERSION 2
#define PT_PATH_MAX 4096

typedef struct {
    int64_t hid_file, hid_images, hid_labels, hid_crc; /* hid_t, opaque: callers need no hdf5.h */
    int64_t first, count; /* global index of the first sample, samples */
    char name[256]; /* <split>/shard_NNNNN.h5, relative to the data directory (messages) */
} pt_shard;

typedef struct {
    char dir[PT_PATH_MAX];
    char split[16];
    int nshards;
    pt_shard *shards;
    int64_t count;       /* samples in the split */
    int channels, height, width;
    int64_t sample_size; /* channels * height * width */
    int num_classes;
    pt_dtype image_dtype; /* PT_U8 (scaled to [0, 1] on read) or PT_F32 (read as is) */
    bool tokens;          /* uint8 samples are byte tokens: read as their values, unscaled */
    bool verify;          /* check every sample read against /crc32 (env PT_SHARD_VERIFY=0: off) */
    char source[64];
    /* staging for one read, grown on demand */
    void *stage;
    int32_t *stage_labels;
    uint32_t *stage_crc;
    uint32_t *crc_span; /* /crc32 from the first to the last sample of a shard read */
    int64_t crc_span_cap;
    int64_t stage_cap;
    int64_t *order; /* (index, position) pairs, sorted */
    int64_t *uniq;  /* distinct requested indices, sorted */
    int *slot;      /* staged row of each requested position */
} pt_dataset;

/* Opens every shard of a split, collectively over comm (parallel HDF5, MPI-IO driver), and checks
 * that shapes and counts agree with the index. With validate, every rank scans a 1/size share of
 * each shard (checksums, labels outside [0, num_classes), non-finite pixels). Errors are agreed
 * on, so all ranks return the same status. Checksum verification is on unless the environment
 * sets PT_SHARD_VERIFY=0 (for measuring its cost, benchmarks/bench_shard_read.sh). */
pt_status pt_dataset_open(pt_dataset *d, const char *dir, const char *split, MPI_Comm comm,
                          bool validate);
void pt_dataset_close(pt_dataset *d);

/* Reads the samples with global indices idx[0..n) (any order, repeats allowed) into x (n rows of
 * sample_size floats) and y. Each shard is touched with one hyperslab-union read. Independent
 * I/O: ranks call it with different n and indices. With d->verify, a sample whose bytes do not
 * match its stored CRC fails with PT_ERR_DATA naming the shard file and the sample. */
pt_status pt_dataset_read(pt_dataset *d, const int64_t *idx, int n, float *x, int32_t *y);

/* The checksum of one sample as stored in a shard's /crc32: CRC-32 of its image bytes as stored
 * (uint8, or float32 little-endian; `bytes` of them) followed by its label as int32
 * little-endian. pt-prep writes it; the reader checks it. */
uint32_t pt_shard_sample_crc(const void *image, size_t bytes, pt_dtype dtype, int32_t label);

/* The distributed sampler. */
typedef struct {
    int64_t n;
    uint64_t seed;
    int64_t epoch; /* epoch of perm, -1 before the first */
    int64_t *perm;
    bool shuffle;
} pt_sampler;

pt_status pt_sampler_init(pt_sampler *s, int64_t n, uint64_t seed, bool shuffle);
void pt_sampler_free(pt_sampler *s);
/* Makes perm the permutation of epoch `epoch` (Fisher-Yates, Philox(seed, shuffle stream, epoch)). */
void pt_sampler_set_epoch(pt_sampler *s, int64_t epoch);
/* Contiguous share of `rows` global rows for `rank` of `size`: the first rows % size ranks get one
 * row more. */
void pt_batch_share(int64_t rows, int rank, int size, int64_t *offset, int64_t *count);

/* pt-prep: Fashion-MNIST IDX files (gzip or plain) -> shards. The validation split is a seeded
 * random `val_count` examples of the official training set; the official test set is kept apart.
 * `limit` > 0 keeps only the first `limit` training examples (small test data). */
typedef struct {
    const char *src_dir, *out_dir;
    int shards;
    int64_t val_count;
    int64_t limit;
    uint64_t seed;
    bool float32; /* store images as float32 in [0, 1] instead of uint8 */
} pt_prep_options;

pt_status pt_prep_fashion_mnist(const pt_prep_options *opt);

/* pt-prep kjv-lm / kjv-books: the King James Bible as `bible -f 'Gen1:1-Rev22:21'` prints it, one
 * verse per line led by its reference ("Ge1:1 In the beginning ..."), read from src_dir (a file).
 *   kjv-lm: byte tokens; windows of ctx + 1 bytes (stride ctx) of the verses' text, split by book.
 *   kjv-books: one verse per sample (its first `ctx` bytes, zero-padded), labelled with its book
 *   group; test and validation verses come from held-out chapters. */
pt_status pt_prep_kjv(const pt_prep_options *opt, bool books, int ctx);

#ifdef __cplusplus
}
#endif
#endif
