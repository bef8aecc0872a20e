"""bench/age_heads.py: a run of one fold is decided as a finished run decides; a number head's ages in years go
through cut points fitted on its out-of-fold rows, a band head's probabilities through the offsets alone."""
import numpy as np
import pandas as pd

from bench import age_heads
from src.labels import PROB_COLUMNS
from src.predictions import Predictions
from src.run.oof import oof_rows
from src.run.rundir import RunDir

AGES = np.array([20, 25, 40, 45, 60, 60])  # masked men of each band: classes 0, 0, 1, 1, 2, 2
LABELS = np.array([0, 0, 1, 1, 2, 2])


def hand_run(log_dir, name, years):
    """Every row's probabilities say "under 30" (p 0.5 against 0.3 and 0.2); only `years` (or nothing) tells more."""
    run = RunDir(log_dir, name)
    run.fold(0).mkdir(parents=True)
    probs = np.zeros((len(AGES), 18))
    probs[:, :3] = [0.5, 0.3, 0.2]
    paths = [f"p{i}.jpg" for i in range(len(AGES))]
    oof_rows(0, paths, LABELS, Predictions(probs, years), AGES).to_csv(run.oof(0), index=False)
    ev = pd.DataFrame(probs, columns=PROB_COLUMNS).assign(ImageID=paths)
    (ev if years is None else ev.assign(years=years)).to_csv(run.root / "eval_probs.csv", index=False)
    return run


def test_a_number_head_is_decided_by_its_fitted_cut_points_and_a_band_head_by_offsets(tmp_path, capsys):
    answers = pd.DataFrame({"ImageID": [f"p{i}.jpg" for i in range(len(AGES))], "ans": LABELS})
    answers.to_csv(tmp_path / "eval_answers.csv", index=False)
    number = age_heads.decided(hand_run(tmp_path, "number", AGES.astype(float)), answers)
    # argmax says class 0 everywhere: F1 of class 0 = 2*2 / (2 + 6) = 0.5, every other class 0, over 18 classes
    assert abs(number["argmax"] - 0.5 / 18) < 1e-9 and number["folds"] == 1 and number["mae"] == 0.0
    # the lowest grid cut points that split 25 | 40 and 45 | 60: 25.25 and 48; then every row is right
    assert number["cuts"] == (25.25, 48.0) and number["tuned"]["acc"] == 1.0 and number["tuned"]["f1_age"] == 1.0
    band = age_heads.decided(hand_run(tmp_path, "band", None), answers)
    assert band["cuts"] is None and band["mae"] is None and band["tuned"]["acc"] < 1.0
    age_heads.main(["--data_dir", str(tmp_path), "--log_dir", str(tmp_path), "--runs", "number", "band",
                    "--ceiling", "0.8"])
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith(("| number |", "| band |"))}
    # three of 18 classes right: macro-F1 3/18 = 0.1667, 0.208 of a ceiling of 0.8
    assert rows["number"][5] == "0.1667" and rows["number"][7] == "0.208" and rows["number"][8] == "25.25, 48 |"
    assert rows["band"][3] == "-" and rows["band"][8] == "- |"
