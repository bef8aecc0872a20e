"""src/predict/onnx_graph.py: the exported graph against PyTorch for each kind of model, its outputs and its
dynamic batch."""
import numpy as np
import pytest
import torch

from src.engine import builders
from src.engine.forward import forward_views, probabilities
from src.labels import task_probabilities
from src.predict import onnx_graph
from tests.helpers import tiny_cfg

SIZE = (64, 48)


def models_of(n=1, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = tiny_cfg(img_height=SIZE[0], img_width=SIZE[1], **overrides)
    return [builders.model(cfg).eval() for _ in range(n)]


def images(n, seed=1):
    return torch.randint(0, 256, (n, 3, *SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def exported(runs, tta):
    graph = onnx_graph.ProbabilityGraph(runs, tta)
    return graph, onnx_graph.session(onnx_graph.onnx_bytes(graph, SIZE))


@pytest.mark.parametrize("overrides", [dict(heads="joint", head="arcface"), dict(heads="per_task", head="linear")],
                         ids=["joint-arcface", "per_task-linear"])
def test_graph_matches_pytorch_per_head_kind(overrides):
    models = models_of(**overrides)
    graph, sess = exported([models], "none")
    x = images(5)  # a batch size unlike the export's example (2): the batch axis is dynamic
    assert onnx_graph.parity(graph, sess, x) < 1e-5
    probs, mask, gender, age = sess.run(None, {onnx_graph.INPUT: x.numpy()})
    with torch.no_grad():
        expected = probabilities(forward_views(models, x, torch.device("cpu"), "none", "none")).numpy()
    assert probs.shape == (5, 18) and np.allclose(probs, expected, atol=1e-5)
    assert [t.shape for t in (mask, gender, age)] == [(5, 3), (5, 2), (5, 3)]
    for ours, theirs in zip((mask, gender, age), task_probabilities(expected)):
        assert np.allclose(ours, theirs, atol=1e-5)


def test_a_two_fold_ensemble_with_flip_is_the_mean_of_its_folds_and_views():
    folds = models_of(2)
    graph, sess = exported([folds], "flip")
    x = images(3)
    got = onnx_graph.run_session(sess, x)[0]
    with torch.no_grad():
        by_hand = np.mean([torch.softmax(m(v), 1).numpy() for m in folds for v in (x, x.flip(3))], axis=0)
    assert np.allclose(got, by_hand, atol=1e-5)
    _, one_view_of_one_fold = exported([folds[:1]], "none")
    assert not np.allclose(got, onnx_graph.run_session(one_view_of_one_fold, x)[0], atol=1e-3)


def test_runs_of_an_ensemble_weigh_equally_whatever_their_fold_counts():
    a, b = models_of(2, seed=0), models_of(1, seed=5, heads="per_task")
    graph, sess = exported([a, b], "none")
    x = images(4)
    with torch.no_grad():
        per_run = [probabilities(forward_views(m, x, torch.device("cpu"), "none", "none")).numpy() for m in (a, b)]
    assert np.allclose(onnx_graph.run_session(sess, x)[0], (per_run[0] + per_run[1]) / 2, atol=1e-5)


def test_ema_weights_export_as_they_predict():
    cfg = tiny_cfg(img_height=SIZE[0], img_width=SIZE[1], ema="true", ema_decay="0.5")
    torch.manual_seed(0)
    model = builders.model(cfg)
    ema = builders.ema(cfg, model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # the average now differs from the live weights
        model(images(4)).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
    average = ema.module.eval()
    graph, sess = exported([[average]], "flip")
    x = images(3)
    assert onnx_graph.parity(graph, sess, x) < 1e-5
    with torch.no_grad():
        assert not torch.allclose(torch.softmax(model.eval()(x), 1), torch.softmax(average(x), 1), atol=1e-3)


def test_a_vit_exports():
    graph, sess = exported([models_of(model="vit_tiny_patch16_224")], "flip")
    assert onnx_graph.parity(graph, sess, images(3)) < 1e-4


def test_parity_counts_nan_as_infinitely_far():
    models = models_of()
    graph, sess = exported([models], "none")
    with torch.no_grad():
        for p in models[0].parameters():
            p.fill_(float("nan"))  # PyTorch now says NaN; the graph still holds the old weights
    assert onnx_graph.parity(graph, sess, images(2)) == float("inf")


def test_parity_takes_the_age_in_years_relative_to_itself_and_probabilities_as_they_are():
    """float32 keeps about 7 digits of any number: an ordinal head's age (18 + 42 summed probabilities) differs by
    1e-4 years between onnxruntime and PyTorch where its probabilities agree to 1e-6; the age is judged relative to
    itself, a probability absolutely."""

    class Outputs:
        output_names = ("probs", "years")

        def __init__(self, *values):
            self.values = [np.asarray(v, np.float32) for v in values]

        def eval(self):
            return self

        def __call__(self, x):
            return [torch.from_numpy(v) for v in self.values]

        def run(self, names, feed):
            return self.values

    ours = Outputs([0.25, 0.75], [50.0])
    assert onnx_graph.parity(ours, Outputs([0.25, 0.75], [50.0055]), images(1)) == pytest.approx(1.1e-4, rel=0.01)
    assert onnx_graph.parity(ours, Outputs([0.2502, 0.75], [50.0]), images(1)) == pytest.approx(2e-4, rel=0.01)
    assert onnx_graph.parity(ours, Outputs([0.25, 0.75], [np.nan]), images(1)) == float("inf")


def test_an_ordinal_graph_exports_at_parity():
    models = models_of(heads="per_task", age_head="ordinal")
    graph, sess = exported([models], "flip")
    assert "years" in graph.output_names and onnx_graph.parity(graph, sess, images(4)) < 1e-5
