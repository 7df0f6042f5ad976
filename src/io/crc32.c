/* CRC-32 on zlib: shared by the checkpoints (ckpt.c) and the data shards (dataset.c, pt-prep). */
#include <zlib.h>

#include "paratrain/crc.h"

uint32_t pt_crc32_update(uint32_t crc, const void *data, size_t bytes)
{
    uLong c = crc;
    const Bytef *p = data;
    while (bytes > 0) { /* zlib counts in uInt */
        uInt n = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
        c = crc32(c, p, n);
        p += n, bytes -= n;
    }
    return (uint32_t)c;
}

uint32_t pt_crc32(const void *data, size_t bytes) { return pt_crc32_update(0, data, bytes); }

uint32_t pt_crc32_combine(uint32_t crc_a, uint32_t crc_b, int64_t len_b)
{
    return (uint32_t)crc32_combine(crc_a, crc_b, (z_off_t)len_b);
}
