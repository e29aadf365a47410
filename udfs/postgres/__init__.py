"""PostgreSQL engine: an embedded local cluster and the PL/Python adapter."""
