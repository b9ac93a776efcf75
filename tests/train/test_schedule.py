import pytest

from slimkit.train import lr_factor


def test_cosine_runs_from_one_to_zero():
    assert lr_factor(0.0, schedule="cosine") == 1.0
    assert lr_factor(0.5, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(1.0, schedule="cosine") == pytest.approx(0.0)


def test_warmup_then_cosine():
    assert lr_factor(0.05, schedule="cosine", warmup_fraction=0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, schedule="cosine", warmup_fraction=0.1) == pytest.approx(1.0)


def test_step_schedule():
    kw = dict(schedule="step", milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_factor(p, **kw) for p in (0.2, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0.1, schedule="poly")
