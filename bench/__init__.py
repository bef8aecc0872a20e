"""Benchmarks, run as modules from the repository root (python -m bench.<name>) or by path from anywhere
(python bench/<name>.py), as tools/ are. bench/RESULTS.md holds the current figures, bench/notes/ older ones."""
