"""Tools run from the repository root as modules: python -m tools.<name> (demo, make_synthetic_data, report,
find_label_issues, score, probe_trust)."""
