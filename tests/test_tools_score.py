"""tools/score.py: the score tool agrees with src/metrics.py."""
import pandas as pd

from tests.helpers import run_py


def test_score_tool_matches_the_metrics_module(tmp_path):
    truth = pd.DataFrame({"ImageID": ["a", "b", "c", "d"], "ans": [0, 7, 17, 7]})
    sub = pd.DataFrame({"ImageID": ["d", "c", "b", "a"], "ans": [7, 17, 8, 0]})
    truth.to_csv(tmp_path / "t.csv", index=False)
    sub.to_csv(tmp_path / "s.csv", index=False)
    out = run_py("-m", "tools.score", tmp_path / "s.csv", tmp_path / "t.csv").stdout
    from src.metrics import macro_f1

    assert f"macro_f1={macro_f1([0, 7, 17, 7], [0, 8, 17, 7]):.4f}" in out and "acc=0.7500" in out
    sub.iloc[:2].to_csv(tmp_path / "s.csv", index=False)
    assert "lacks 2 ImageIDs" in run_py("-m", "tools.score", tmp_path / "s.csv", tmp_path / "t.csv", check=False).stderr
