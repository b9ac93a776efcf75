"""spmm / sddmm (slimkit.compressed.kernels) against dense references: the native C++ kernels and
the torch.sparse fallback, float64 (rel. error < 1e-10) and float32 (< 1e-5), and their errors
on bad input. The native tests skip only where the extension cannot be built (no compiler)."""

import logging

import pytest
import torch

from slimkit.compressed import kernels
from slimkit.compressed.kernels import native_kernels_available

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
NATIVE = native_kernels_available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native CSR kernels could not be built here")


def _relative_error(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _structure(rows, cols, density, generator):
    """Random CSR structure with an empty row and a fully dense row (when there are two rows)."""
    mask = torch.rand(rows, cols, generator=generator) < density
    if rows >= 2:
        mask[0] = False
        mask[-1] = True
    linear = torch.nonzero(mask.flatten()).flatten()
    row = linear // cols
    crow = torch.zeros(rows + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=rows), 0)
    return crow.int(), (linear % cols).int(), mask


def _dense_weight(crow, col, values, shape):
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=True).to_dense()


TILE = {dtype: kernels._load().tile_width(dtype) if NATIVE else 64 for dtype in (torch.float32, torch.float64)}


def _cases(dtype):
    """(rows, cols, N, density): random shapes, N = 1, N around and across tile multiples."""
    tile = TILE[dtype]
    g = torch.Generator().manual_seed(7)
    cases = [(1, 1, 1, 1.0), (5, 3, 1, 0.5), (40, 33, 3, 0.3), (17, 64, tile, 0.1), (64, 17, tile - 1, 0.9),
             # several tiles, B read in place (few stored values per column) ...
             (33, 70, tile + 5, 0.05), (9, 130, 2 * tile + 17, 0.2), (70, 40, 2 * tile, 0.02),
             # ... and packed into panels (at least 4 per column)
             (200, 30, 2 * tile + 17, 0.5), (120, 50, 3 * tile, 0.3), (90, 20, tile + 1, 0.6)]
    for _ in range(4):
        rows, cols, n = (int(v) for v in torch.randint(1, 150, (3,), generator=g))
        cases.append((rows, cols, n, float(torch.rand((), generator=g))))
    return cases


def _check_products(dtype, seed_offset=0):
    for i, (rows, cols, n, density) in enumerate(_cases(dtype)):
        g = torch.Generator().manual_seed(1000 * seed_offset + i)
        crow, col, _ = _structure(rows, cols, density, g)
        values = torch.randn(col.numel(), dtype=dtype, generator=g)
        dense = torch.randn(cols, n, dtype=dtype, generator=g)
        a = torch.randn(rows, n, dtype=dtype, generator=g)
        weight = _dense_weight(crow, col, values, (rows, cols))
        case = f"rows={rows} cols={cols} N={n} density={density:.2f}"

        out = kernels.spmm(crow, col, values, dense, (rows, cols))
        assert out.shape == (rows, n) and out.dtype == dtype, case
        assert _relative_error(out, weight @ dense) < TOLERANCE[dtype], case

        sampled = kernels.sddmm(crow, col, a, dense, (rows, cols))
        row_of = torch.repeat_interleave(torch.arange(rows), (crow[1:] - crow[:-1]).long())
        reference = (a @ dense.T)[row_of, col.long()]
        assert sampled.shape == (col.numel(),), case
        if col.numel():
            assert _relative_error(sampled, reference) < TOLERANCE[dtype], case


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_kernels_match_the_dense_reference(dtype, monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "1")
    calls = []
    module = kernels._load()

    class Spy:  # proves the native kernels ran, not the fallback
        def __getattr__(self, name):
            calls.append(name)
            return getattr(module, name)

    monkeypatch.setattr(kernels, "_load", lambda: Spy())
    _check_products(dtype)
    assert "spmm" in calls and "sddmm" in calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fallback_matches_the_dense_reference(dtype, monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "0")
    assert not native_kernels_available()
    monkeypatch.setattr(kernels, "_load", lambda: pytest.fail("the native kernels were used"))
    _check_products(dtype, seed_offset=1)


@needs_native
def test_native_kernels_handle_n_zero_and_zero_rows():
    crow, col = torch.tensor([0, 2, 2, 3], dtype=torch.int32), torch.tensor([0, 4, 1], dtype=torch.int32)
    values = torch.randn(3)
    assert kernels.spmm(crow, col, values, torch.empty(5, 0), (3, 5)).shape == (3, 0)
    assert torch.equal(kernels.sddmm(crow, col, torch.empty(3, 0), torch.empty(5, 0), (3, 5)), torch.zeros(3))
    empty_crow, empty_col = torch.zeros(1, dtype=torch.int32), torch.zeros(0, dtype=torch.int32)
    assert kernels.spmm(empty_crow, empty_col, torch.zeros(0), torch.randn(5, 4), (0, 5)).shape == (0, 4)


@needs_native
def test_native_kernels_give_the_same_bits_on_any_thread_count():
    g = torch.Generator().manual_seed(3)
    crow, col, _ = _structure(300, 200, 0.1, g)
    values, dense, a = torch.randn(col.numel(), generator=g), torch.randn(200, 150, generator=g), torch.randn(300, 150, generator=g)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append((kernels.spmm(crow, col, values, dense, (300, 200)),
                            kernels.sddmm(crow, col, a, dense, (300, 200))))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_non_contiguous_operands_are_accepted():
    g = torch.Generator().manual_seed(4)
    crow, col, _ = _structure(20, 30, 0.3, g)
    values = torch.randn(col.numel(), dtype=torch.float64, generator=g)
    dense_t = torch.randn(70, 30, dtype=torch.float64, generator=g)  # dense = its transpose, a view
    a_t = torch.randn(70, 20, dtype=torch.float64, generator=g)
    weight = _dense_weight(crow, col, values, (20, 30))
    assert _relative_error(kernels.spmm(crow, col, values, dense_t.T, (20, 30)), weight @ dense_t.T) < 1e-10
    row_of = torch.repeat_interleave(torch.arange(20), (crow[1:] - crow[:-1]).long())
    reference = (a_t.T @ dense_t)[row_of, col.long()]
    assert _relative_error(kernels.sddmm(crow, col, a_t.T, dense_t.T, (20, 30)), reference) < 1e-10


# ---- bad input ----------------------------------------------------------------------------

def _small():
    crow = torch.tensor([0, 2, 3], dtype=torch.int32)
    col = torch.tensor([0, 3, 1], dtype=torch.int32)
    return crow, col, torch.randn(3), torch.randn(4, 6), torch.randn(2, 6)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    "bad, error, message",
    [
        (lambda c, k, v, d, a: (c.long(), k, v, d, a), TypeError, "crow_indices must be torch.int32"),
        (lambda c, k, v, d, a: (c, k.long(), v, d, a), TypeError, "col_indices must be torch.int32"),
        (lambda c, k, v, d, a: (c[:-1], k, v, d, a), ValueError, "crow_indices has 2 entries"),
        (lambda c, k, v, d, a: (c, k, v[:2], d, a), ValueError, "one entry per column index"),
        (lambda c, k, v, d, a: (c, k, v, d[:3], a), ValueError, "must have 4 rows"),
        (lambda c, k, v, d, a: (c, k, v, d[0], a), ValueError, "must be 2-D"),
        (lambda c, k, v, d, a: (c, k, v, d.double(), a), TypeError, "expected torch.float32"),
        (lambda c, k, v, d, a: (c, k, v.int(), d.int(), a), TypeError, "floating point"),
    ],
)
def test_spmm_rejects_bad_input_clearly(native, bad, error, message, monkeypatch):
    if native and not NATIVE:
        pytest.skip("native CSR kernels could not be built here")
    monkeypatch.setenv(kernels.ENV_VAR, "1" if native else "0")
    crow, col, values, dense, _ = bad(*_small())
    with pytest.raises(error, match=message):
        kernels.spmm(crow, col, values, dense, (2, 4))


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (lambda c, k, v, d, a: (c, k, a[:1], d), ValueError, "must have 2 rows"),
        (lambda c, k, v, d, a: (c, k, a, d[:, :5]), ValueError, "same number of columns"),
        (lambda c, k, v, d, a: (c, k, a, d.double()), TypeError, "expected torch.float32"),
        (lambda c, k, v, d, a: (c.long(), k, a, d), TypeError, "crow_indices must be torch.int32"),
    ],
)
def test_sddmm_rejects_bad_input_clearly(bad, error, message):
    crow, col, a, b = bad(*_small())
    with pytest.raises(error, match=message):
        kernels.sddmm(crow, col, a, b, (2, 4))


def _use(native, monkeypatch):
    """Run the products natively or through torch.sparse (skip native where it cannot be built)."""
    if native and not NATIVE:
        pytest.skip("native CSR kernels could not be built here")
    monkeypatch.setenv(kernels.ENV_VAR, "1" if native else "0")
    if not native:
        monkeypatch.setattr(kernels, "_load", lambda: pytest.fail("the native kernels were used"))


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    "crow, col, message",
    [
        ([0, 2, 3], [0, 4, 1], "col_indices out of range"),
        ([0, 2, 3], [0, -1, 1], "col_indices out of range"),
        ([0, 3, 2], [0, 1], "non-decreasing"),
        ([0, 2, 4], [0, 1, 2], "must run from 0"),
        ([1, 2, 3], [0, 1, 2], "must run from 0"),
    ],
)
def test_every_index_is_checked(native, crow, col, message, monkeypatch):
    """Index contents are checked before any memory access, in C++ or before torch.sparse (which
    reads through any index): a ValueError, not a crash or a read out of bounds."""
    _use(native, monkeypatch)
    crow, col = torch.tensor(crow, dtype=torch.int32), torch.tensor(col, dtype=torch.int32)
    with pytest.raises(ValueError, match=message):
        kernels.spmm(crow, col, torch.randn(col.numel()), torch.randn(4, 6), (2, 4))
    with pytest.raises(ValueError, match=message):
        kernels.sddmm(crow, col, torch.randn(2, 6), torch.randn(4, 6), (2, 4))
    for n in (0, 1, 200):  # no column read at all, a matrix-vector product, several tiles
        with pytest.raises(ValueError, match=message):
            kernels.spmm(crow, col, torch.randn(col.numel()), torch.randn(4, n), (2, 4))
        with pytest.raises(ValueError, match=message):
            kernels.sddmm(crow, col, torch.randn(2, n), torch.randn(4, n), (2, 4))


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("position, index", [(-1, 10), (5, -3), (400, 2**31 - 1)])
@pytest.mark.parametrize("n", [1, 64, 200])
def test_a_bad_column_anywhere_is_caught(native, position, index, n, monkeypatch):
    """One bad index among many, on every path (vector, one tile, packed panels; torch.sparse)."""
    _use(native, monkeypatch)
    g = torch.Generator().manual_seed(5)
    crow, col, _ = _structure(100, 10, 0.8, g)
    col[position] = index
    with pytest.raises(ValueError, match="col_indices out of range"):
        kernels.spmm(crow, col, torch.randn(col.numel()), torch.randn(10, n), (100, 10))
    with pytest.raises(ValueError, match="col_indices out of range"):
        kernels.sddmm(crow, col, torch.randn(100, n), torch.randn(10, n), (100, 10))


def test_the_fallback_checks_a_structure_again_once_it_changes(monkeypatch):
    """An unchanged structure is checked once (no device wait per product on CUDA); writing into
    it in place, or a new tensor at a freed one's address, is checked again."""
    _use(False, monkeypatch)
    crow, col, values, dense, _ = _small()
    kernels.spmm(crow, col, values, dense, (2, 4))
    assert kernels._checked_indices.holds(crow, col, 4)
    col[1] = 7
    assert not kernels._checked_indices.holds(crow, col, 4)
    with pytest.raises(ValueError, match="col_indices out of range"):
        kernels.spmm(crow, col, values, dense, (2, 4))
    col[1] = 3
    kernels.spmm(crow, col, values, dense, (2, 4))
    crow[2] = 1
    with pytest.raises(ValueError, match="must run from 0"):
        kernels.sddmm(crow, col, torch.randn(2, 6), dense, (2, 4))
    assert not kernels._checked_indices.holds(crow, col.clone(), 4)


@needs_native
def test_native_module_checks_its_own_arguments():
    """Called directly (bypassing the Python checks), the extension still refuses bad layouts."""
    crow, col, values, dense, a = _small()
    module = kernels._load()
    with pytest.raises(ValueError, match="contiguous"):
        module.spmm(crow, col, values, dense.T.contiguous().T)
    with pytest.raises(TypeError, match="int32"):
        module.sddmm(crow.long(), col, a, dense)
    with pytest.raises(ValueError, match="rows"):
        module.sddmm(crow, col, a[:1], dense)


# ---- loading ------------------------------------------------------------------------------

def test_a_failed_build_warns_once_and_falls_back(monkeypatch, caplog):
    monkeypatch.setenv(kernels.ENV_VAR, "1")
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_attempted", False)
    builds = []

    def broken(cflags, ldflags):
        builds.append(cflags)
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(kernels, "_build", broken)
    with caplog.at_level(logging.WARNING, logger="slimkit"):
        assert not native_kernels_available()
        assert not native_kernels_available()
        crow, col, values, dense, _ = _small()
        out = kernels.spmm(crow, col, values, dense, (2, 4))
    assert len(builds) == len(kernels._flag_sets())  # every flag set tried once, then never again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0].getMessage()
    assert _relative_error(out, _dense_weight(crow, col, values, (2, 4)) @ dense) < 1e-5


def test_the_environment_variable_turns_native_kernels_off(monkeypatch):
    for value in ("0", "false", "off", " NO "):
        monkeypatch.setenv(kernels.ENV_VAR, value)
        assert not kernels.native_kernels_enabled() and not native_kernels_available()
    monkeypatch.setenv(kernels.ENV_VAR, "1")
    assert kernels.native_kernels_enabled()
    monkeypatch.delenv(kernels.ENV_VAR)
    assert kernels.native_kernels_enabled()


def test_the_source_ships_with_the_package():
    assert kernels.SOURCE.is_file()


# ---- in the layers ------------------------------------------------------------------------

def _mlp(seed):
    from torch import nn

    from slimkit.compressed import compress
    from slimkit.sparse.masking import apply_masks

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(30, 70), nn.ReLU(), nn.Linear(70, 50), nn.ReLU(), nn.Linear(50, 5)).double()
    g = torch.Generator().manual_seed(seed)
    apply_masks(model, {str(i): torch.rand(model[i].weight.shape, generator=g) < 0.3 for i in (0, 2, 4)})
    compress(model)
    return model


def test_native_and_fallback_layers_agree(monkeypatch):
    x = torch.randn(67, 30, dtype=torch.float64)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv(kernels.ENV_VAR, flag)
        model = _mlp(0)
        inputs = x.clone().requires_grad_()
        out = model(inputs)
        out.square().sum().backward()
        results.append((out.detach(), inputs.grad, [model[i].values.grad for i in (0, 2, 4)]))
    (out_a, dx_a, dv_a), (out_b, dx_b, dv_b) = results
    assert _relative_error(out_a, out_b) < 1e-12 and _relative_error(dx_a, dx_b) < 1e-12
    assert all(_relative_error(a, b) < 1e-12 for a, b in zip(dv_a, dv_b))


def test_activations_stay_in_the_kernels_layout_between_layers():
    """A compressed Linear returns (batch x out) as a transposed view of a contiguous (out x batch)
    result; bias add and ReLU keep those strides, so the next layer's copy is a no-op."""
    model = _mlp(1)
    h = torch.randn(40, 30, dtype=torch.float64)
    for layer in model:
        h = layer(h)
        assert h.transpose(0, 1).is_contiguous(), layer
