"""Training: the config-to-objects builders (builders), the K-fold loop (trainer), the one training step
(step), the one forward pass with TTA (forward), what a fold saves and restores (checkpointer), optimizers,
early stopping, batch mixing and DDP. Imports config, run, data and model; never predict or insight."""
