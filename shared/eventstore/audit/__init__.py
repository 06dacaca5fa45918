"""Tamper evidence beyond the per-stream hash chains (docs/architecture.md §2a): signed
checkpoints over a Merkle tree of every stream's head, exports of the log, offline verification
and inclusion proofs."""
