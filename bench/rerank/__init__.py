"""Re-rank stage: score first-stage candidates with a model-based scorer in Ray actors."""
