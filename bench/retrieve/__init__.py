"""First stage: BM25 (bm25s by default; Pyserini as an optional extra) -> Run."""
