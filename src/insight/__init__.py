"""Insight into finished runs: out-of-fold rows and their per-task views (oof), photo galleries (gallery),
the label-issue finder (label_issues) and the run comparison page (comparison). Imports every package below
it; nothing imports insight but tools."""
