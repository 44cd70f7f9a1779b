// Placeholder until written (see the header).
