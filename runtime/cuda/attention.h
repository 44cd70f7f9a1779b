// Paged attention over the KV cache (paged_kv.h) for a batch of sequences, each with some new query
// rows at absolute positions [start_pos, start_pos + num_rows):
//   - decode: one row per sequence, the KV length split over CTAs, partial results merged;
//   - prefill: a chunk of rows at any offset (flash-style online softmax over KV tiles), also split
//     over the KV length when asked.
// Masks (MODEL.md): key k is visible to the query at position q iff k < kv_len and
//   (window == 0 || q - k < window) && (k <= q || bidi_begin[row] <= k < bidi_end[row]);
// global layers pass window 0 and no spans (strictly causal). The scale is a parameter (Gemma
// 4: 1.0).
//
// Supported shapes: the closed list of attention_shapes.h (anything else is InvalidArgument).
// Any block_size from 1 to 256 works (the kernels gather per token through the block table).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/cuda/attention_shapes.h"
#include "runtime/cuda/bf16.h"
#include "runtime/cuda/paged_kv.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace tessera::runtime::cuda {

// All pointers are device pointers. Planned once per step on the host (the int32 arrays), then the
// same struct serves every layer of a group with only `kv.layer`, q/out and the layer's pool
// changed.
struct AttentionParams {
  // Query rows of the whole batch: q[row * q_row_stride + head * head_dim + d], row in
  // [0, total_rows). Rows of sequence s are [row_start[s], row_start[s + 1]). The stride lets q be
  // a slice of a fused QKV buffer.
  const Bf16* q = nullptr;
  int64_t q_row_stride = 0;
  // Output, same indexing with out_row_stride: out[row * out_row_stride + head * head_dim + d].
  Bf16* out = nullptr;
  int64_t out_row_stride = 0;

  int32_t num_seqs = 0;
  int32_t total_rows = 0;
  int32_t num_q_heads = 0;
  PagedKvView kv;  // num_kv_heads and head_dim of this layer; num_q_heads % kv heads == 0.
  const int32_t* row_start = nullptr;  // [num_seqs + 1], row_start[0] = 0, non-decreasing.
  const int32_t* start_pos = nullptr;  // [num_seqs]: absolute position of the sequence's first row.
  // [num_seqs, block_table_stride]: block ids; entries for positions no query can see may be
  // kReleasedBlock (-1) and are never read. Covers positions [0, start_pos + rows).
  const int32_t* block_tables = nullptr;
  int32_t block_table_stride = 0;
  // Optional, [total_rows] each: the absolute [begin, end) of the bidirectional span the row
  // belongs to (begin == end: none). Null for global layers and for sequences without media.
  const int32_t* bidi_begin = nullptr;
  const int32_t* bidi_end = nullptr;

  int32_t window = 0;  // 0 = unbounded (global layers).
  float scale = 1.0f;

  // Rows per sequence the grid is sized for (decode: 1). A sequence with more rows is an error the
  // kernels cannot see, so the host must pass the true maximum.
  int32_t max_rows_per_seq = 1;
  // KV-length split: each (sequence, row tile, kv head) is cut into num_splits CTAs over its key
  // range; 1 writes `out` directly. More than 1 needs `workspace` of AttentionWorkspaceFloats()
  // floats.
  int32_t num_splits = 1;
  float* workspace = nullptr;
};

// AttentionWorkspaceFloats() and ChooseDecodeSplits(): attention_shapes.h.

// Checks the shapes against the closed list and the pointers for null; InvalidArgument otherwise.
absl::Status ValidateAttention(const AttentionParams& p);

// Decode: every sequence has exactly one row (max_rows_per_seq must be 1).
absl::Status LaunchPagedDecodeAttention(const AttentionParams& p, cudaStream_t stream);

// Prefill (or mixed): any number of rows per sequence up to max_rows_per_seq.
absl::Status LaunchPagedPrefillAttention(const AttentionParams& p, cudaStream_t stream);

}  // namespace tessera::runtime::cuda
