"""Train stage: the grid of model families x training methods, each cell a Ray Train run."""
