"""Training: the config-to-objects builders (builders), the K-fold loop (trainer), the one training step
(step), the one forward pass with TTA (forward), optimizers, early stopping, batch mixing and DDP; what a fold
saves and restores is src/run/saver.py's. Imports config, run, data and model; never predict or insight."""
