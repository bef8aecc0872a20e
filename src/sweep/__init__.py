"""Optuna sweeps over train.py settings: the sweep file (space), the study storage and its table (study), the
worker that trains trials as ordinary runs (worker). Imports config, run and engine; never insight."""
