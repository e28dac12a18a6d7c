"""Reason-to-Rank (R2R, Ji et al.): a teacher LLM's rankings and reasons, distilled into a student
that ranks with the project's single relevance neuron and can write its own reasons."""
