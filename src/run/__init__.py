"""The run folder and everything written into it: its paths and locks (rundir), the checkpoint layout
(checkpoint), what a fold saves and restores, in its kill-safe order (saver), its out-of-fold rows (oof), atomic
writes (atomic), a run's records of the results it is handed (records), trackers (tracking, trackers), the log
handlers (logging) and figures (figures). Imports errors, labels, metrics, predictions and the config; never the
decisions or people, which are computed above it (src/engine/evaluation.py)."""
