// Placeholder until written (media.h).
