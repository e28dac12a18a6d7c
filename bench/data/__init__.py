"""Data stage: load a collection from any source, split its queries, build training items."""
