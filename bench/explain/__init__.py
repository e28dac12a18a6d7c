"""Explain stage: KernelSHAP token/word attributions in a pool of Ray actors."""
