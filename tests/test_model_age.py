"""src/model/age.py and the decisions on a number: each head's loss against a hand computation, P(band) that sums to
1, cumulative probabilities that never rise, rows known by their band only, cut points against a hand search, the
joint head refused, and age corrections."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from src import decision
from src.config.parsing import parse
from src.errors import ConfigError
from src.labels import AGES, encode_label, encode_target, target_label, target_years
from src.model.age import OUT, AgeLoss, number_head, regression_parts


def head_output(raw: torch.Tensor) -> torch.Tensor:
    """A head's output row as the loss reads it: OUT summary columns (unused by the loss), then the raw outputs."""
    return torch.cat([torch.zeros(len(raw), OUT), raw], 1)


def softplus(z):
    return math.log1p(math.exp(z))


def test_ordinal_loss_is_the_binary_ce_summed_over_the_year_boundaries():
    raw = torch.tensor([[0.3 * j - 4 for j in range(42)], [2.0 - 0.1 * j for j in range(42)], [1.5] * 42])
    ages = [20, 45, 60]
    by_hand = 0.0
    for row, age in zip(raw.tolist(), ages):
        for t, z in zip(range(18, 60), row):
            y = 1.0 if age > t else 0.0  # P(age > t)
            by_hand += y * softplus(-z) + (1 - y) * softplus(z)
    loss = AgeLoss("ordinal")(head_output(raw), torch.tensor(ages, dtype=torch.float32), torch.tensor([0, 1, 2]))
    assert loss.item() == pytest.approx(by_hand / 3, rel=1e-5)


def test_distribution_loss_is_kl_to_a_gaussian_soft_label():
    raw = torch.stack([torch.zeros(43), torch.linspace(-1, 1, 43), torch.linspace(1, -1, 43)])
    ages, sigma = [25.0, 40.0, 59.0], 3.0
    by_hand = 0.0
    for row, age in zip(raw.tolist(), ages):
        weights = [math.exp(-0.5 * ((a - age) / sigma) ** 2) for a in range(18, 61)]
        q = [w / sum(weights) for w in weights]
        norm = math.log(sum(math.exp(z) for z in row))
        by_hand += sum(qa * (math.log(qa) - (z - norm)) for qa, z in zip(q, row) if qa > 0)
    loss = AgeLoss("distribution", sigma)(head_output(raw), torch.tensor(ages), torch.tensor([0, 1, 1]))
    assert loss.item() == pytest.approx(by_hand / 3, rel=1e-4)


def test_regression_loss_is_smooth_l1_in_tens_of_years_plus_the_spreads_likelihood():
    raw = torch.tensor([[-0.5, 0.2], [0.4, -1.0], [2.1, 0.0]])
    ages = [30.0, 41.0, 60.0]
    by_hand = 0.0
    for (z, s), age in zip(raw.tolist(), ages):
        mean, spread = 39 + 10 * z, 10 * softplus(s) + 0.1
        err = abs(mean - age) / 10
        smooth = 0.5 * err ** 2 if err < 1 else err - 0.5
        by_hand += smooth + math.log(spread) + 0.5 * ((age - mean) / spread) ** 2 + 0.5 * math.log(2 * math.pi)
    loss = AgeLoss("regression")(head_output(raw), torch.tensor(ages), torch.tensor([1, 1, 2]))
    assert loss.item() == pytest.approx(by_hand / 3, rel=1e-5)


def test_a_row_known_by_its_band_only_is_trained_on_what_the_band_says():
    unknown = torch.tensor([float("nan")])
    raw = torch.linspace(-2, 2, 42)[None]
    got = AgeLoss("ordinal")(head_output(raw), unknown, torch.tensor([1])).item()
    # band 30-59: age > t is certain for t <= 29 and false for t = 59; the boundaries 30..58 stay open
    by_hand = sum(softplus(-z) for t, z in zip(range(18, 60), raw[0].tolist()) if t <= 29) + softplus(raw[0, -1].item())
    assert got == pytest.approx(by_hand, rel=1e-5)
    flat = AgeLoss("distribution")(head_output(torch.zeros(1, 43)), unknown, torch.tensor([0])).item()
    q = 1 / 12  # uniform over 18..29
    assert flat == pytest.approx(12 * q * (math.log(q) - math.log(1 / 43)), rel=1e-5)
    inside = torch.tensor([[(45 - 39) / 10, 0.0]])  # the number 45 lies inside 30..59: nothing to learn from it
    assert AgeLoss("regression")(head_output(inside), unknown, torch.tensor([1])).item() == 0.0


@pytest.mark.parametrize("kind", ["ordinal", "distribution", "regression"])
def test_each_head_gives_band_probabilities_that_sum_to_one(kind):
    torch.manual_seed(0)
    head = number_head(kind)(16)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
        out = head(torch.randn(64, 16) * 3)
    bands = out[:, :3].exp()
    assert torch.allclose(bands.sum(1), torch.ones(64), atol=1e-5) and (bands >= 0).all()
    assert ((out[:, 3] >= AGES[0] - 1e-4) & (out[:, 3] <= AGES[1] + 1e-4)).all() or kind == "regression"


def test_the_ordinal_heads_cumulative_probabilities_never_rise():
    torch.manual_seed(1)
    head = number_head("ordinal")(8)
    with torch.no_grad():
        head.steps.normal_(0, 3)  # any values: the thresholds can only fall
        head.weight.weight.normal_()
        above = torch.sigmoid(head.raw(torch.randn(100, 8) * 5))
    assert (above[:, 1:] <= above[:, :-1] + 1e-7).all()
    with torch.no_grad():
        at_zero = torch.sigmoid(head.raw(torch.zeros(1, 8)))
        assert head.summary(head.raw(torch.zeros(1, 8)))[1].item() == pytest.approx(18 + at_zero.sum().item())


def test_the_regression_spread_stays_positive():
    mean, spread = regression_parts(torch.tensor([[0.0, -50.0], [1.0, 50.0]]))
    assert (spread > 0).all() and mean.tolist() == pytest.approx([39.0, 49.0])


def test_cut_points_match_a_hand_search_on_a_hand_made_table():
    """Twelve masked men: true ages and the ages a head read. The search must find the grid's first best pair."""
    true_band = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    years = np.array([22.0, 26.5, 29.0, 33.5, 31.0, 38.0, 47.0, 53.5, 55.0, 54.0, 56.5, 58.0])
    labels = encode_label(0, 0, true_band)
    probs = np.zeros((12, 18))
    probs[:, :3] = 1 / 3  # P(band) says nothing: the number decides
    best, chosen = -1.0, None
    for c1 in decision.CUT_GRID[0]:
        for c2 in decision.CUT_GRID[1]:
            pred = (years >= c1).astype(int) + (years >= c2)
            f1 = f1_score(labels, encode_label(0, 0, pred), labels=range(18), average="macro", zero_division=0)
            if f1 > best + 1e-12:
                best, chosen = f1, (c1, c2)
    cuts = decision.fit_cuts(probs, labels, years, None)
    assert cuts == pytest.approx(chosen)
    decided = decision.decide(probs, None, years, cuts)
    assert f1_score(labels, decided, labels=range(18), average="macro", zero_division=0) == pytest.approx(best)
    assert 29.0 < cuts[0] <= 31.0 and 53.5 < cuts[1] <= 54.0  # 33.5 stays young: a wider error elsewhere


def test_the_cut_points_decide_only_the_age_offsets_still_decide_the_rest():
    probs = np.full((2, 18), 1e-6)
    probs[0, encode_label(2, 1, 0)] = 0.9  # not worn, female, and its band would be <30
    probs[1, encode_label(0, 0, 2)] = 0.9
    probs /= probs.sum(1, keepdims=True)
    out = decision.decide(probs, None, np.array([61.0, 20.0]), (30.0, 60.0))
    assert out.tolist() == [encode_label(2, 1, 2), encode_label(0, 0, 0)]


def test_training_targets_carry_the_exact_age_and_the_label():
    labels, ages = np.array([5, 12, 17]), np.array([44, 10, 75])
    targets = encode_target(labels, ages)
    assert target_label(targets).tolist() == [5, 12, 17]
    assert target_years(targets).tolist() == [44, 18, 60]  # clamped into the ages the heads tell apart
    assert target_years(encode_target(labels)).tolist() == [17, 17, 17]  # AGES[0] - 1: not known


def test_a_number_head_on_the_joint_head_is_one_line_naming_heads_per_task():
    with pytest.raises(ConfigError, match="--age_head ordinal is the age head of heads: per_task") as caught:
        parse(["--age_head", "ordinal"])
    assert "\n" not in str(caught.value) and "--heads per_task" in str(caught.value)
    assert parse(["--age_head", "ordinal", "--heads", "per_task"]).age_head == "ordinal"


def test_an_age_correction_changes_the_number_and_its_band(tmp_path):
    from src.data.tables import load_train
    from tests.helpers import make_data

    data = make_data(tmp_path / "d", train_people=6, eval_people=1, seed=2, size="48x64")
    before = load_train(data, "none", 60, None, 0)
    person = before["person_id"].iloc[0]
    (tmp_path / "fix.csv").write_text(f"id,fix,note\n{person},age_61,the folder's age was mistyped\n")
    after = load_train(data, str(tmp_path / "fix.csv"), 60, None, 0)
    rows = after["person_id"] == person
    assert (after.loc[rows, "age"] == 61).all() and (after.loc[rows, "label"] % 3 == 2).all()
    (tmp_path / "bad.csv").write_text(f"id,fix,note\n{person},age_x,?\n")
    from src.errors import DataError
    with pytest.raises(DataError, match="age_N: N a whole age"):
        load_train(data, str(tmp_path / "bad.csv"), 60, None, 0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ordinal", "distribution", "regression"])
def test_a_run_with_each_head_resumes_after_a_kill_infers_predicts_and_exports_with_parity(few_people, tmp_path,
                                                                                          monkeypatch, kind):
    """Two folds of the tiny model: one run straight, one killed at fold 0's second last.pt and resumed, with the same
    records; then infer decides with the fitted cut points on its years, predict.py agrees, and the export's years
    match PyTorch's."""
    import json

    import pandas as pd

    import export as export_py
    import predict as predict_py
    from src.engine import trainer
    from src.predict import infer as infer_mod
    from src.config.schema import InferConfig
    from src.run.rundir import RunDir
    from tests.helpers import tiny_cfg
    from tests.test_run_saver import Killed, assert_same_records, fold_records, writes_seen

    settings = dict(data_dir=few_people, log_dir=tmp_path, heads="per_task", age_head=kind, deterministic="true",
                    oof_from="last")
    seen = writes_seen(monkeypatch)
    trainer.train(tiny_cfg(name="straight", **settings))
    want = fold_records(RunDir(tmp_path, "straight"))
    second_last = [i for i, paths in enumerate(seen) if paths[0].name == "last.pt"][1]
    monkeypatch.undo()
    writes_seen(monkeypatch, kill_at=second_last)
    with pytest.raises(Killed):
        trainer.train(tiny_cfg(name="killed", **settings))
    monkeypatch.undo()
    cv = trainer.train(tiny_cfg(name="killed", resume="true", **settings))
    run = RunDir(tmp_path, "killed")
    assert_same_records(fold_records(run), want, f"{kind}: killed at its second last.pt")
    assert "cv_age_mae" in cv and 0 <= cv["cv_age_mae"] < 43
    saved = json.loads(run.decision.read_text())
    cuts = saved["age_cuts"]
    assert decision.CUT_GRID[0][0] <= cuts[0] < cuts[1] <= decision.CUT_GRID[1][-1]

    out = tmp_path / "sub.csv"
    infer_mod.infer(tiny_cfg(InferConfig, data_dir=few_people, log_dir=tmp_path, run="killed", out=out))
    probs = pd.read_csv(tmp_path / "sub.probs.csv")
    p, years = probs[[f"p{k}" for k in range(18)]].to_numpy(), probs["years"].to_numpy()
    by_hand = decision.decide(p, np.array(saved["offsets"]), years, cuts)
    assert (pd.read_csv(out)["ans"].to_numpy() == by_hand).all()

    photos = few_people / "eval" / "images"
    predicted = tmp_path / "p.csv"
    assert predict_py.main(["--log_dir", str(tmp_path), "--run", "killed", "--out", str(predicted), str(photos)]) == 0
    rows = pd.read_csv(predicted).set_index("path")
    ids = pd.read_csv(few_people / "eval" / "info.csv")["ImageID"]
    assert (rows.loc[[str(photos / i) for i in ids], "class"].to_numpy() == by_hand).all()
    assert np.allclose(rows.loc[[str(photos / i) for i in ids], "years"].to_numpy(), years, atol=1e-3)

    assert export_py.main(["--data_dir", str(few_people), "--log_dir", str(tmp_path), "--run", "killed", "--out",
                           str(tmp_path / "export")]) == 0
    card = json.loads((tmp_path / "export" / "model.json").read_text())
    assert card["decision"]["age_cuts"] == cuts and card["parity"]["max_abs_diff"] <= 1e-4
    from src.predict import onnx_graph

    assert "years" in [o.name for o in onnx_graph.session(str(tmp_path / "export" / "model.onnx")).get_outputs()]


@pytest.mark.slow
def test_cut_points_missing_from_a_number_heads_decision_are_refused_and_a_band_run_needs_none(few_people, own_run,
                                                                                               dataset, tmp_path,
                                                                                               capsys):
    """An ordinal run whose decision.json lost its age_cuts (missing or null) or holds one as a 5000-digit number is
    refused in one line naming age_cuts before predicting; a band run's decision never had them and is used as it is."""
    import json

    import infer as infer_py
    from src.engine import trainer
    from src.run.rundir import RunDir
    from tests.helpers import cli, one_line, tiny_cfg

    trainer.train(tiny_cfg(data_dir=few_people, log_dir=tmp_path, name="ord", heads="per_task", age_head="ordinal",
                           epochs=1))
    run = RunDir(tmp_path, "ord")
    saved = json.loads(run.decision.read_text())
    args = ["--data_dir", few_people, "--log_dir", tmp_path, "--run", "ord", "--out", tmp_path / "s.csv",
            "--engine", "torch", "--num_workers", "0"]
    without = {k: v for k, v in saved.items() if k != "age_cuts"}
    huge = json.dumps(dict(saved, age_cuts=[1, 2])).replace("[1, 2]", f"[{'9' * 5000}, 50]")
    for text in (json.dumps(without), json.dumps(dict(saved, age_cuts=None)), huge):
        run.decision.write_text(text)
        code, err = cli(infer_py.main, *args, capsys=capsys)
        line = one_line(err)
        assert code == 1 and "expected 'age_cuts' of two ages" in line and "offsets" not in line, line
        assert not (tmp_path / "s.csv").exists()
    run.decision.write_text(json.dumps(saved))
    assert cli(infer_py.main, *args, capsys=capsys)[0] == 0

    logs, name = own_run  # heads joint, age band
    band = RunDir(logs, name)
    saved = json.loads(band.decision.read_text())
    for text in (json.dumps({k: v for k, v in saved.items() if k != "age_cuts"}), json.dumps(dict(saved, age_cuts=None))):
        band.decision.write_text(text)
        assert cli(infer_py.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, "--out",
                   tmp_path / "b.csv", "--engine", "torch", capsys=capsys)[0] == 0
