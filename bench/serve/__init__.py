"""Serve: a Ray Serve re-rank-and-explain API."""
