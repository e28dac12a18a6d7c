"""Tune: Ray Tune sweeps over hyperparameters, model size and SHAP top-k."""
