"""Shared helpers for benchmark scripts: run slimkit commands, and write result tables into
BENCHMARKS.md between marker comments so each script owns its own section."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def slimkit_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "slimkit", *args]


def run_slimkit(args: list[str]) -> str:
    """Run `slimkit ARGS` as a subprocess (a fresh process per run, so peak-memory figures are its own)."""
    printable = "slimkit " + shlex.join(args)
    print(f"$ {printable}", flush=True)
    subprocess.run(slimkit_cmd(args), check=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return printable


def machine_line() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def write_section(name: str, body: str) -> None:
    """Replace the text between `<!-- name:begin -->` and `<!-- name:end -->` in BENCHMARKS.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
    BENCHMARKS_MD.write_text(text)
