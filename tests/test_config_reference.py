"""The option reference: docs/options.md is what the schema generates, and it names every option of every entry
point with its default."""
import dataclasses

from src.config.parsing import is_option
from src.config.reference import markdown
from src.config.schema import ENTRY_POINTS
from tests.helpers import ROOT


def test_docs_options_md_is_what_the_schema_generates():
    page = (ROOT / "docs" / "options.md").read_text()
    assert page == markdown(), "docs/options.md is stale: run python -m tools.options"


def test_every_option_of_every_entry_point_is_in_the_reference():
    text = markdown()
    for cls in ENTRY_POINTS:
        for f in dataclasses.fields(cls):
            if is_option(cls, f.name):
                assert f"- `--{f.name}` (" in text, (cls.__name__, f.name)
    assert "- `PATH ...` (" in text  # predict.py's photos, given as bare words
    assert "- `--crop` (none | center | face; default `none`): whole frame" in text
    assert "has an effect only with `--head arcface`" in text  # Needs(...) beside arc_s and arc_m
    assert "Taken by: train.py, infer.py, pseudo_train.py, predict.py, export.py, python -m tools.track, app.py." in text
    assert max(len(line) for line in text.splitlines()) <= 119
