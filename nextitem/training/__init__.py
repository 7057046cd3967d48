"""Training: GRU4Rec session-parallel training, losses, sampling, optimizers."""
