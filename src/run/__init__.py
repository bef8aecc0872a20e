"""The run folder and everything written into it: its paths and locks (rundir), the checkpoint layout
(checkpoint), atomic writes (atomic), a run's records (records), the log handlers (logging) and figures
(figures). Imports errors, labels, metrics and the config schema."""
