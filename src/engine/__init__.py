"""Training: the config-to-objects builders (builders), the run (trainer), one fold (fold) and one epoch (epoch) over
the typed state they share (state), the one training step (step), the one forward pass with TTA (forward), a run's
results from its out-of-fold rows (evaluation), optimizers, early stopping, batch mixing and DDP; what a fold saves
and restores is src/run/saver.py's. Imports config, run, data and model; never predict or insight."""
