"""Evaluate stage: ir-measures per query, explanation metrics, significance."""
