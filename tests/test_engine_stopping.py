"""src/engine/stopping.py: early stopping in both modes."""
from src.engine.stopping import EarlyStopping


def test_early_stopping_min_mode_with_patience_and_min_delta():
    es = EarlyStopping("val_loss", "auto", patience=2, min_delta=0.1)
    assert es.mode == "min"
    assert es.step(1.0) and not es.should_stop
    assert not es.step(0.95)  # better, but by less than min_delta
    assert not es.should_stop
    assert not es.step(0.92)
    assert es.should_stop
    state = es.state_dict()
    again = EarlyStopping("val_loss", "auto", patience=2, min_delta=0.1)
    again.load_state_dict(state)
    assert again.should_stop and again.best == 1.0


def test_early_stopping_max_mode_resets_on_improvement():
    es = EarlyStopping("val_f1", "auto", patience=2)
    assert es.mode == "max"
    es.step(0.5)
    assert not es.step(0.4)
    assert es.step(0.6) and es.wait == 0
    assert EarlyStopping("val_loss", "max", 1).mode == "max"
