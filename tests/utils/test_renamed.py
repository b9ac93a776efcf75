import warnings

import pytest

from slimkit.methods import DSR, MEST, SET, PruneOnce
from tests.methods.test_prune_methods import SmallConvNet


@pytest.mark.parametrize("cls", [MEST, SET, DSR])
def test_stop_is_now_mutation_stop(cls):
    with pytest.warns(DeprecationWarning, match=rf"{cls.__name__}\(stop=\.\.\.\) is now {cls.__name__}\(mutation_stop"):
        method = cls(SmallConvNet(), sparsity=0.8, stop=0.4)
    assert method.mutation_stop == 0.4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cls(SmallConvNet(), sparsity=0.8, mutation_stop=0.4).mutation_stop == 0.4


def test_prune_once_progress_mode_is_now_progress():
    with pytest.warns(DeprecationWarning, match="progress"):
        method = PruneOnce(SmallConvNet(), sparsity=0.5, progress_mode="none")
    assert method.progress == "none"


def test_gradual_start_end_are_now_gmp_start_gmp_end():
    from slimkit.methods import GradualMagnitude

    with pytest.warns(DeprecationWarning, match="gmp_start"):
        method = GradualMagnitude(SmallConvNet(), sparsity=0.5, start=0.1, end=0.6)
    assert (method.start, method.end) == (0.1, 0.6)
