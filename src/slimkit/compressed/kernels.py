"""CSR x dense (spmm) and sampled dense x dense (sddmm) products, native on CPU when possible.

The native kernels (`csrc/csr_kernels.cpp`) are a C++ extension compiled on first use with
`torch.utils.cpp_extension.load` and cached under `$SLIMKIT_CACHE/extensions` (default
`~/.cache/slimkit/extensions`), one folder per torch version, source, flags and CPU, so a later
process loads it in well under a second. The first build takes some tens of seconds. A cached
library is loaded only from folders and files of the current user that no one else can write,
and only when it matches the size and sha256 recorded after its build (`extension_cache`).

If the build cannot run (no C++ compiler or ninja) or fails, one warning is logged and every
product goes through torch.sparse instead, which is what CUDA tensors and dtypes other than
float32/float64 always use. `SLIMKIT_NATIVE_KERNELS=0` forces that fallback (read at every call).

Both functions work on row-major operands laid out as the kernels want them:

- `spmm(crow, col, values, dense, shape)`: (rows x N) = CSR(shape) @ dense (cols x N);
- `sddmm(crow, col, a, b, shape)`: the nnz values a[row_k] . b[col_k] at the CSR positions, with
  a (rows x N) and b (cols x N). With a = grad_out (rows x N) and b = input (cols x N) it is the
  gradient of the stored values of W in W @ input.

Shapes and dtypes are checked here, in Python. The native kernels also check every index: the
row offsets before the product, the column indices as they read them (clamped, so an index out
of range is never read through, and the call then raises). torch.sparse reads through any
index, so the fallback checks the same before building its sparse tensor (once per unchanged
structure: `_CheckedIndices`). A bad structure is a ValueError, never a crash, on every path.
Layers also check their whole structure (sorted columns too) when it is built or loaded
(`structure.check_structure`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import sys
import threading
import weakref
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from slimkit.compressed import extension_cache

log = logging.getLogger("slimkit")

ENV_VAR = "SLIMKIT_NATIVE_KERNELS"
SOURCE = Path(__file__).resolve().parent / "csrc" / "csr_kernels.cpp"
NATIVE_DTYPES = (torch.float32, torch.float64)
_MODULE_NAME = "slimkit_csr_kernels"

_lock = threading.Lock()
_module: ModuleType | None = None
_attempted = False


def native_kernels_enabled() -> bool:
    """False when `SLIMKIT_NATIVE_KERNELS` is 0 / false / no / off."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def native_kernels_available() -> bool:
    """Whether spmm/sddmm on CPU float32/float64 tensors run natively (builds the extension on
    first call; False when disabled by `SLIMKIT_NATIVE_KERNELS=0` or when the build failed)."""
    return native_kernels_enabled() and _load() is not None


def _cache_root() -> Path:
    # The same root as slimkit.data.sources.cache_root (not imported: that pulls in the data stack).
    return Path(os.environ.get("SLIMKIT_CACHE", Path.home() / ".cache" / "slimkit"))


def _cpu_identity() -> str:
    """What -march=native compiles for: a build cached on a shared home folder must not be
    loaded by a machine with another CPU (it could hit an unsupported instruction)."""
    identity = [platform.machine(), platform.processor()]
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
        for line in info:  # no /proc/cpuinfo (not Linux): machine and processor names only
            if line.startswith(("model name", "flags", "Features", "CPU part")):
                identity.append(line.strip())
            if line.strip() == "":  # the first processor is enough
                break
    return "\n".join(identity)


def _flag_sets() -> list[tuple[list[str], list[str]]]:
    """(cflags, ldflags) to try in order: tuned for this CPU with OpenMP threads, then portable."""
    if sys.platform == "win32":
        return [(["/O2", "/openmp"], []), (["/O2"], [])]
    tuned = ["-O3", "-ffp-contract=fast", "-fopenmp", "-march=native"]
    return [(tuned, ["-fopenmp"]), (["-O3", "-ffp-contract=fast"], [])]


def _build(cflags: list[str], ldflags: list[str]) -> ModuleType:
    """The extension for these flags: a verified cached build, else a fresh one (recorded)."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            part if isinstance(part, bytes) else part.encode()
            for part in (source, torch.__version__, sys.version, " ".join(cflags + ldflags),
                         os.environ.get("CXX", ""), _cpu_identity())
        )
    ).hexdigest()[:16]
    name = f"csr_kernels-torch{torch.__version__.replace('+', '_')}-{key}"
    build_dir = extension_cache.build_folder(_cache_root(), name)
    with extension_cache.locked(build_dir):
        library = extension_cache.verified_library(build_dir)
        if library is not None:
            return extension_cache.import_library(library)
        if any(build_dir.iterdir()):  # not a finished, recorded build (killed halfway, truncated, edited)
            log.info("rebuilding slimkit's native CSR kernels in %s: the cached build is incomplete or "
                     "does not match its record", build_dir)
            extension_cache.clear(build_dir)
        log.info("building slimkit's native CSR kernels in %s (first use: some tens of seconds)", build_dir)
        module = _compile(build_dir, cflags, ldflags)
        extension_cache.record_library(Path(module.__file__))
        return module


def _compile(build_dir: Path, cflags: list[str], ldflags: list[str]) -> ModuleType:
    """Compile the source in `build_dir` and import it (torch.utils.cpp_extension)."""
    # torch.utils.cpp_extension logs a CUDA_HOME notice on import on machines without CUDA.
    notices = logging.getLogger("torch.utils.cpp_extension")
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        notices.setLevel(level)
    return cpp_extension.load(
        name=_MODULE_NAME, sources=[str(SOURCE)], extra_cflags=cflags, extra_ldflags=ldflags,
        build_directory=str(build_dir), verbose=False,
    )


def _load() -> ModuleType | None:
    global _module, _attempted
    if _attempted:
        return _module
    with _lock:
        if _attempted:
            return _module
        errors = []
        for cflags, ldflags in _flag_sets():
            try:
                _module = _build(cflags, ldflags)
                break
            except Exception as exc:  # noqa: BLE001 - any build failure means: use the fallback
                lines = str(exc).strip().splitlines()
                errors.append(f"[{' '.join(cflags)}] {type(exc).__name__}: {lines[0] if lines else ''}")
                log.debug("native CSR kernel build with %s failed", cflags, exc_info=True)
        if _module is None:
            log.warning(
                "slimkit's native CSR kernels could not be built, compressed layers use torch.sparse "
                "(slower on CPU); set %s=0 to skip the attempt. %s", ENV_VAR, "; ".join(errors),
            )
        _attempted = True
    return _module


# ---- checks -------------------------------------------------------------------------------

def _check_structure_args(crow: Tensor, col: Tensor, shape: tuple[int, int]) -> tuple[int, int]:
    rows, cols = (int(s) for s in shape)
    for name, tensor in (("crow_indices", crow), ("col_indices", col)):
        if tensor.dtype != torch.int32:
            raise TypeError(f"{name} must be torch.int32, got {tensor.dtype}")
        if tensor.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if crow.numel() != rows + 1:
        raise ValueError(f"crow_indices has {crow.numel()} entries, a {rows}-row matrix needs {rows + 1}")
    if crow.device != col.device:
        raise ValueError(f"crow_indices and col_indices are on different devices ({crow.device}, {col.device})")
    return rows, cols


def _check_dense(name: str, tensor: Tensor, rows: int, what: str, like: Tensor) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(tensor.shape)}")
    if tensor.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows ({what}), got shape {tuple(tensor.shape)}")
    if tensor.dtype != like.dtype:
        raise TypeError(f"{name} is {tensor.dtype}, expected {like.dtype}")
    if tensor.device != like.device:
        raise ValueError(f"{name} is on {tensor.device}, expected {like.device}")


def _native(*tensors: Tensor) -> ModuleType | None:
    """The extension when every tensor suits it, else None (the torch.sparse path)."""
    if not native_kernels_enabled():
        return None
    if any(t.device.type != "cpu" for t in tensors) or tensors[-1].dtype not in NATIVE_DTYPES:
        return None
    return _load()


class _CheckedIndices:
    """The index tensors the torch.sparse path has checked, with the version they had then: a
    compressed layer runs three products per training step on a structure that rarely changes,
    and on CUDA each check waits for the device. An entry holds only weak references (a new
    tensor that reuses a freed one's id is checked again) and is stale once either tensor is
    written in place (its version counter moves)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._entries: dict[tuple[int, int, int], tuple] = {}

    @staticmethod
    def _state(crow: Tensor, col: Tensor) -> tuple:
        return crow._version, col._version, crow.data_ptr(), col.data_ptr()

    def holds(self, crow: Tensor, col: Tensor, cols: int) -> bool:
        entry = self._entries.get((id(crow), id(col), cols))
        return entry is not None and entry[0]() is crow and entry[1]() is col and entry[2] == self._state(crow, col)

    def add(self, crow: Tensor, col: Tensor, cols: int) -> None:
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[(id(crow), id(col), cols)] = (weakref.ref(crow), weakref.ref(col), self._state(crow, col))


_checked_indices = _CheckedIndices()


def _check_index_contents(crow: Tensor, col: Tensor, cols: int) -> None:
    """For the torch.sparse path: what the native kernels check in C++ before reading through an
    index (torch's CSR kernels read through any index, out of bounds included). Row offsets must
    run from 0 to nnz without decreasing and every column lie in [0, cols): O(rows + nnz) on the
    tensors' device, one wait for it, and none for a structure already checked unchanged."""
    if _checked_indices.holds(crow, col, cols):
        return
    nnz = col.numel()
    offsets_bad = (crow[0] != 0) | (crow[-1] != nnz) | (crow[1:] < crow[:-1]).any()
    columns_bad = ((col < 0) | (col >= cols)).any()
    if not bool(offsets_bad | columns_bad):
        _checked_indices.add(crow, col, cols)
        return
    if bool(crow[0] != 0) or bool(crow[-1] != nnz):
        raise ValueError(f"crow_indices must run from 0 to the number of column indices ({nnz}), "
                         f"got {int(crow[0])} ... {int(crow[-1])}")
    if bool(offsets_bad):
        raise ValueError("crow_indices must be non-decreasing")
    raise ValueError(f"col_indices out of range: every index must lie in [0, {cols}), "
                     f"got [{int(col.min())}, {int(col.max())}]")


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """The torch.sparse view of a structure, checked first (torch's own check would run on every
    call and is skipped: `check_invariants=False`)."""
    _check_index_contents(crow, col, shape[1])
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


# ---- products -----------------------------------------------------------------------------

def spmm(crow: Tensor, col: Tensor, values: Tensor, dense: Tensor, shape: tuple[int, int]) -> Tensor:
    """CSR(crow, col, values; shape rows x cols) @ dense (cols x N) -> (rows x N), contiguous.

    Not differentiable by itself (see `functional.csr_matmul`)."""
    rows, cols = _check_structure_args(crow, col, shape)
    if values.dim() != 1 or values.numel() != col.numel():
        raise ValueError(f"values must be 1-D with one entry per column index ({col.numel()}), got shape "
                         f"{tuple(values.shape)}")
    if not values.is_floating_point():
        raise TypeError(f"values must be floating point, got {values.dtype}")
    if values.device != crow.device:
        raise ValueError(f"values are on {values.device}, the indices on {crow.device}")
    _check_dense("the dense operand", dense, cols, "the CSR matrix's columns", values)
    native = _native(crow, col, values, dense)
    if native is not None:
        return native.spmm(crow, col, values.contiguous(), dense.contiguous())
    return torch.sparse.mm(_csr(crow, col, values, (rows, cols)), dense)


def sddmm(crow: Tensor, col: Tensor, a: Tensor, b: Tensor, shape: tuple[int, int]) -> Tensor:
    """vals[k] = a[row_k, :] . b[col_k, :] for every stored position k of the CSR structure
    (shape rows x cols); a is (rows x N), b is (cols x N). Returns the nnz values (1-D)."""
    rows, cols = _check_structure_args(crow, col, shape)
    if not a.is_floating_point():
        raise TypeError(f"a must be floating point, got {a.dtype}")
    if a.device != crow.device:
        raise ValueError(f"a is on {a.device}, the indices on {crow.device}")
    _check_dense("a", a, rows, "the CSR matrix's rows", a)
    _check_dense("b", b, cols, "the CSR matrix's columns", a)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of columns, got {tuple(a.shape)} and {tuple(b.shape)}")
    native = _native(crow, col, a, b)
    if native is not None:
        return native.sddmm(crow, col, a.contiguous(), b.contiguous())
    pattern = _csr(crow, col, torch.zeros(col.numel(), dtype=a.dtype, device=a.device), (rows, cols))
    return torch.sparse.sampled_addmm(pattern, a, b.transpose(0, 1), beta=0.0).values()
