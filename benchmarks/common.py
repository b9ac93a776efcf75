"""Shared helpers for benchmark scripts: run slimkit commands, and write result tables into
BENCHMARKS.md between marker comments so each script owns its own section."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

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
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def write_section(name: str, body: str) -> None:
    """Replace the text between `<!-- name:begin -->` and `<!-- name:end -->` in BENCHMARKS.md.
    The file is locked while it is rewritten: `run_gpu.py` runs scripts that finish side by side."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    BENCHMARKS_MD.touch()
    with open(BENCHMARKS_MD, "r+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        text = file.read() or "# Benchmarks\n"
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
        file.seek(0)
        file.write(text)
        file.truncate()


def _say(message: str) -> None:
    print(message, flush=True)


def resume_command(args: list[str], out: Path) -> list[str] | None:
    """The `slimkit` arguments that continue the interrupted run in `out`, or None if it must start
    over. `train` and `prune` runs continue with `train --resume`; `slim` and `prune-channels`
    continue when the same command runs again. A sweep killed at the end of a session loses at
    most an epoch of each run."""
    command = args[:1]
    if command in (["train"], ["prune"]) and (out / "config.yaml").is_file():
        return ["train", "--resume", str(out)]  # the saved config.yaml already has --progress/--out
    if (command == ["slim"] and (out / "train" / "config.yaml").is_file()) or (
            command == ["prune-channels"] and (out / "checkpoint.pt").is_file()):
        return args + ["--progress", "log", "--out", str(out)]
    return None


def run_job(
    job: tuple[str, list[str], Path], threads: int = 1, say: Callable[[str], None] = _say, resume: bool = True
) -> None:
    """Run one `slimkit` job into its folder (skipped if finished), single-threaded by default, log
    beside it. Several jobs run side by side use the cores better than one multi-threaded small model.

    An interrupted run continues if its job is unchanged (`resume`; timing benchmarks pass False,
    since a run pieced together from two sessions has no single wall time); otherwise it starts over."""
    label, args, out = job
    out = ROOT / out
    if (out / "metrics.json").exists():
        return
    args_file = out.parent / f"{out.name}.args.json"  # the job that the folder holds
    same_job = args_file.exists() and json.loads(args_file.read_text()) == args
    resumed = resume_command(args, out) if resume and same_job else None
    if resumed is None and out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    args_file.write_text(json.dumps(args))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    say(f"{'resume' if resumed else 'start'} {label}")
    with open(out.parent / f"{out.name}.log", "a" if resumed else "w") as log:
        if resumed:
            log.write("\n--- resumed by the benchmark script ---\n")
            log.flush()
        cmd = slimkit_cmd(resumed or args + ["--progress", "log", "--out", str(out)])
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=log, stderr=log, env=env)
    say(f"done  {label}")


def run_jobs(
    jobs: list[tuple[str, list[str], Path]], workers: int, threads: int = 1, progress: str = "auto"
) -> list[str]:
    """Run every job, `workers` side by side. A failed run does not stop the others (a sweep is
    hours of work); the failures are listed at the end and returned, and their tables show '–'.

    `progress` shows the jobs finished so far (slimkit's display): a bar on a TTY, otherwise at
    most ten "sweep: 12/86 runs done (14%, 35m12s)" lines; "none" keeps only the start/done lines."""
    from slimkit.utils.progress import Progress

    failed = []
    display = Progress(len(jobs), "sweep", mode=progress, unit="runs", write=_say)
    say = _say if display.mode == "none" else display.write  # through the bar, not across it

    def attempt(job: tuple[str, list[str], Path]) -> None:
        try:
            run_job(job, threads, say)
        except subprocess.CalledProcessError:
            failed.append(job[0])
            say(f"FAILED {job[0]} (see {job[2]}.log)")
        finally:
            display.update()

    with display, ThreadPoolExecutor(workers) as pool:
        list(pool.map(attempt, jobs))
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", flush=True)
    return failed


def read_metrics(out: Path) -> dict | None:
    path = ROOT / out / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def mean_std(values: list[float], percent: bool = True) -> str:
    """'mean ± std' over seeds (just the value for one seed; '–' for none)."""
    form = "{:.2%}" if percent else "{:.3f}"
    if not values:
        return "–"
    if len(values) == 1:
        return form.format(values[0])
    return f"{form.format(statistics.mean(values))} ± {form.format(statistics.stdev(values))}"
