"""Prediction with finished runs: fold x TTA x run ensembles, the submission and its files (infer), and
pseudo-labelling rounds (pseudo). Imports config, run, data, model and engine; never insight."""
