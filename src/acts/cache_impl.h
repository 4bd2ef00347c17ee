// Activation cache files, shared by the writers (cache_write.c) and the reader (cache_read.c):
// activations.bin is a 4096-byte header and the rows (f32, f16 or bf16, row after row), tokens.bin
// one int32 per row. The writer runs the store's row stream into them; the reader is a source that
// reads the rows and serves them through the same mixing buffer as the live store. activations.bin
// is written last (its header last of all), so a directory without it is an interrupted run, never
// a cache. Sharded (version 2, written by MPI ranks): shard k in activations.K.bin and
// tokens.K.bin (k > 0), their order in shards.bin. docs/formats.md, section 4, has the layout.
#ifndef CTERP_ACTS_CACHE_IMPL_H
#define CTERP_ACTS_CACHE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/acts.h"

#define CACHE_MAGIC "CTRPACTS"
#define CACHE_VERSION 1u
#define CACHE_VERSION_SHARDED 2u // written by P MPI ranks: the rows in P shard files
#define CACHE_HEADER 4096        // rows start page-aligned
// version 2's fields at this offset: u32 shards, u32 shard index, i64 shard rows, i64 chunks
#define CACHE_SHARD_FIELDS 1600
#define CACHE_MAX_SHARDS 64

_Static_assert(64 + 256 + 256 + 1024 <= CACHE_SHARD_FIELDS,
               "cache header fields fit before the shard fields");
_Static_assert(CACHE_SHARD_FIELDS + 24 <= CACHE_HEADER, "cache header fields fit the header");

// A cache file opened for reading: its fd, size and first CACHE_HEADER bytes (zeros past a
// shorter file). No mapping: a cache may be larger than the address space a process may use.
typedef struct {
    int fd;
    uint64_t size;
    uint8_t hdr[CACHE_HEADER];
} cache_file;

// Bytes of one value of the cache's dtype.
size_t cache_dtype_size(cterp_dtype t);
// h (CACHE_HEADER bytes) <- in's fields; shard: this file's index (0: activations.bin) and rows;
// n_chunks: shards.bin's entries.
void cache_encode_header(uint8_t *h, const cterp_cache_info *in, int shard, int64_t shard_rows,
                         int64_t n_chunks);
// Checks a header against the file size; the message names the file and the field. A sharded
// one (version 2) gives its shard index and shards.bin's entries (NULL: not wanted).
cterp_status cache_decode_header(const char *path, const uint8_t *h, size_t size,
                                 cterp_cache_info *o, int *shard, int64_t *n_chunks);
// DIR/<what>.bin for shard 0, DIR/<what>.K.bin for shard K (what: "activations" or "tokens").
// Caller frees; NULL when out of memory.
char *cache_shard_path(const char *dir, const char *what, int k);
// tokens.bin of shard k (or of the cache) has the size the header says, where present.
cterp_status cache_check_tokens_shard(const char *dir, const cterp_cache_info *info, int k);
cterp_status cache_check_tokens(const char *dir, const cterp_cache_info *info);
// With activations.bin (apath) missing: an error saying what the directory holds instead (an
// interrupted writer's files, or several hooks' caches); else OK (the open then says the rest).
cterp_status cache_check_complete(const char *dir, const char *apath);
// Before a run writes: removes the old activations.bin, a sharded cache's other files and the
// temporaries of killed runs, then syncs the directory.
cterp_status cache_clear_dir(const char *dir, const char *apath);
cterp_status cache_file_open(cache_file *f, const char *path);
void cache_file_close(cache_file *f);

#endif
