/* CRC-32 (IEEE 802.3, zlib's crc32): the one checksum of paratrain. Checkpoints store it per
 * dataset, data shards per sample (docs/DATA_FORMAT.md). */
#ifndef PARATRAIN_CRC_H
#define PARATRAIN_CRC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC-32 of a buffer (crc32 of nothing is 0). */
uint32_t pt_crc32(const void *data, size_t bytes);
/* Continues crc (of earlier bytes) over data: pt_crc32(ab) = pt_crc32_update(pt_crc32(a), b). */
uint32_t pt_crc32_update(uint32_t crc, const void *data, size_t bytes);
/* CRC of the concatenation of A (crc_a) and B (crc_b, len_b bytes), without the bytes. */
uint32_t pt_crc32_combine(uint32_t crc_a, uint32_t crc_b, int64_t len_b);

#ifdef __cplusplus
}
#endif
#endif
