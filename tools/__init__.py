"""Tools: demo, make_synthetic_data, report, find_label_issues, score, probe_trust, track and options. Each runs as a
module from the repository root (python -m tools.<name>) or by its path from anywhere (python tools/<name>.py): run
by path, a script starts itself again as the module, with the repository on PYTHONPATH, so nothing is installed."""
