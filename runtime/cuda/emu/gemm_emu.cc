// Placeholder until written (gemm.h).
