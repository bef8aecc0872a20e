"""The run folder and everything written into it: its paths and locks (rundir), the checkpoint layout
(checkpoint), what a fold saves and restores, in its kill-safe order (saver), its out-of-fold rows (oof), atomic
writes (atomic), a run's records (records), the log handlers (logging) and figures (figures). Imports errors,
labels, metrics and the config schema."""
