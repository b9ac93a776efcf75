"""Fault injection on run folders: does every fault end in a clear error or a recovered, identical result?

    python scripts/fault_injection.py [--trials 21] [--time-limit 900] [--work DIR]

Against `slimkit train --model lenet300 --data synthetic --epochs 3` (a few seconds a run) it
repeats, within the time limit:
- SIGKILL of the training subprocess at random moments (from launch, after it holds its folder,
  and while it writes a file), then `--resume` (or the same command again if it died before
  writing its config); the final model, metrics and history must equal an uninterrupted run's;
- two writers on one folder: the second (a new run and a `--resume`) must get the lock error
  naming the first one's pid, and the first must finish unmixed;
- a full disk (a small tmpfs; needs root, skipped with a note otherwise): before the first
  checkpoint, and with a previous checkpoint that must stay intact and resume identically;
- corrupt and truncated files of every kind the CLI reads in a run folder: `slimkit info`,
  `train --resume` and `export` must end in one line `slimkit: error: ...` (rc 2), no traceback.

It prints a markdown table (fault -> outcome) for docs/reliability. Exit status 1 if any row
is neither a clear error nor a recovered, identical result.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def train_args(epochs: int = 3) -> list[str]:
    return ["--model", "lenet300", "--data", "synthetic", "--epochs", str(epochs), "--batch-size", "64",
            "--progress", "none"]


TRAIN = train_args()
VOLATILE = {"train_time_s", "latency_ms", "peak_mem_bytes", "epoch_time_s", "examples_per_s"}  # wall-clock figures
LOCK_FILE = ".slimkit.lock"
RUN_TIMEOUT_S = 180
CLEAR, RECOVERED = "clear error", "recovered, identical result"


class Budget:
    """The script's time limit: sections stop starting new trials once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def spent(self, reserve: float = 0.0) -> bool:
        return time.monotonic() + reserve > self.deadline


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1"}


def slimkit(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimkit", *args], capture_output=True, text=True, env=_env(),
                          timeout=RUN_TIMEOUT_S, check=False)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slimkit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env())


def result_of(folder: Path) -> dict:
    """What must not change when a run is interrupted and resumed: the model's bytes, the metrics
    and the history (wall-clock figures aside)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    with open(folder / "history.csv") as f:
        history = [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(f)]
    return {"model": hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest(),
            "metrics": {k: v for k, v in metrics.items() if k not in VOLATILE}, "history": history}


def error_outcome(proc: subprocess.CompletedProcess) -> str:
    """"clear error: MESSAGE" for rc 2 ending in one line `slimkit: error: ...` without a traceback;
    otherwise what happened."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("slimkit: error:")]
    if "Traceback" in proc.stderr:
        return f"NOT CLEAR (traceback): {_short(lines[-1])}"
    if proc.returncode != 2 or not starts:
        return f"NOT CLEAR (rc {proc.returncode}): {_short(lines[-1] if lines else '')}"
    message = lines[starts[-1]][len("slimkit: error: "):]
    if starts[-1] != len(lines) - 1:
        return f"NOT ONE LINE ({len(lines) - starts[-1]} lines): {_short(message)}"
    return f"{CLEAR}: {_short(message)}"


def _short(text: str, limit: int = 230) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _temp_files(folder: Path) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if name.endswith(".tmp")]
    except FileNotFoundError:
        return []


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL `proc` if it still runs; whether it did."""
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _holds_lock(folder: Path) -> Callable[[], bool]:
    return lambda: (folder / LOCK_FILE).is_file() and (folder / LOCK_FILE).read_text().strip().isdigit()


# SIGKILL at random moments

def _kill_at(mode: str, folder: Path, rng: random.Random, timing: dict[str, float]) -> tuple[bool, bool]:
    """Run the reference command into `folder` and SIGKILL it (`mode`: random moment from launch,
    random moment after it holds its folder, while it writes its k-th file). Returns (killed, mid-write)."""
    proc = start(["train", *TRAIN, "--out", str(folder)])
    if mode == "launch":
        time.sleep(rng.uniform(0, timing["total"]))
    elif mode == "locked":
        _wait_for(_holds_lock(folder), proc)
        time.sleep(rng.uniform(0, timing["total"] - timing["lock"]))
    else:  # while the k-th atomic write it is seen doing is under way (checkpoints, history, model files)
        target, seen = rng.randint(1, 6), set()

        def reached() -> bool:
            seen.update(_temp_files(folder))
            return len(seen) >= target

        _wait_for(reached, proc)
    killed = _kill(proc)
    return killed, bool(_temp_files(folder))


def sigkill_rows(work: Path, reference: dict, timing: dict[str, float], trials: int, budget: Budget,
                 rng: random.Random) -> list[tuple[str, str, str]]:
    modes = {"launch": "SIGKILL of `slimkit train` at a random moment after launch",
             "locked": "SIGKILL of `slimkit train` at a random moment of its run (after it holds its folder)",
             "write": "SIGKILL of `slimkit train` while it writes a file (an atomic write's temp file exists)"}
    done = {mode: [] for mode in modes}
    for trial in range(trials):
        if budget.spent(reserve=3 * timing["total"] + 30):
            break
        mode = list(modes)[trial % len(modes)]
        folder = work / f"kill-{trial}"
        killed, mid_write = _kill_at(mode, folder, rng, timing)
        if (folder / "config.yaml").exists():
            proc = slimkit(["train", "--resume", str(folder)])
        else:  # killed before it wrote its settings: nothing to resume, the same command starts over
            proc = slimkit(["train", *TRAIN, "--out", str(folder)])
        if proc.returncode != 0:
            outcome = f"FAILED to recover: {error_outcome(proc)}"
        elif _temp_files(folder):
            outcome = f"FAILED: temp files left: {', '.join(_temp_files(folder))}"
        elif result_of(folder) != reference:
            outcome = "FAILED: result differs from the uninterrupted run"
        else:
            outcome = RECOVERED
        done[mode].append((killed, mid_write, outcome))
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for mode, results in done.items():
        if not results:
            continue
        failures = sorted({o for _, _, o in results if o != RECOVERED})
        killed = sum(k for k, _, _ in results)
        mid_write = sum(w for _, w, _ in results)
        trials_text = f"{len(results)} ({killed} killed before the end, {mid_write} with a write in progress)"
        rows.append((modes[mode], trials_text, "; ".join(failures) or f"{RECOVERED} ({len(results)}/{len(results)})"))
    return rows


# two writers

def two_writers_rows(work: Path) -> list[tuple[str, str, str]]:
    folder = work / "two-writers"
    first = start(["train", *train_args(epochs=60), "--out", str(folder)])  # long enough for both others to start
    rows = []
    try:
        if not _wait_for(_holds_lock(folder), first):
            return [("two writers on one folder", "1", "FAILED: the first run never took its lock")]
        others = {"a second `slimkit train --out` on a folder a run is writing":
                  ["train", *TRAIN, "--seed", "1", "--out", str(folder)],
                  "`slimkit train --resume` of a folder a run is writing": ["train", "--resume", str(folder)]}
        with ThreadPoolExecutor(len(others)) as pool:
            results = dict(zip(others, pool.map(slimkit, others.values())))
        for what, proc in results.items():
            outcome = error_outcome(proc)
            if first.poll() is not None:
                outcome = f"INCONCLUSIVE: the first run ended before the others were refused ({outcome})"
            elif f"pid {first.pid}" not in outcome:
                outcome = f"NOT CLEAR (the holder's pid {first.pid} is not named): {outcome}"
            rows.append((what, "1", outcome.replace(str(folder), "OUT").replace(f"pid {first.pid}", "pid PID")))
    finally:
        first.wait(timeout=RUN_TIMEOUT_S)
    config = (folder / "config.yaml").read_text()
    unmixed = first.returncode == 0 and "epochs: 60" in config and "seed: 0" in config
    rows.append(("the first of the two writers", "1", "finished, unmixed (its own config, model and metrics)"
                 if unmixed else f"FAILED: rc {first.returncode}, config.yaml mixed"))
    return rows


# full disk

def full_disk_rows(work: Path, reference: dict) -> list[tuple[str, str, str]]:
    what = "full disk (tmpfs of {size})"
    if os.geteuid() != 0:
        return [(what.format(size="a few MB"), "0", "skipped: needs root to mount a tmpfs")]
    mount = work / "tmpfs"
    mount.mkdir()
    rows = []
    try:
        for size, case in (("1m", "before the first checkpoint (2.1 MB)"),
                           ("3m", "with a previous checkpoint, then resumed on a larger disk")):
            probe = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                   capture_output=True, text=True, check=False)
            if probe.returncode != 0:
                return [(what.format(size=size), "0", f"skipped: mount not permitted ({_short(probe.stderr.strip())})")]
            try:
                folder = mount / "run"
                outcome = error_outcome(slimkit(["train", *TRAIN, "--out", str(folder)])).replace(str(folder), "OUT")
                if size == "3m":
                    intact = (folder / "checkpoint.pt").is_file()
                    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
                    resumed = slimkit(["train", "--resume", str(folder)])
                    same = resumed.returncode == 0 and result_of(folder) == reference
                    outcome += ("; then, with space freed, `--resume`: " + RECOVERED if intact and same
                                else f"; FAILED to recover (rc {resumed.returncode}, checkpoint intact: {intact})")
                rows.append((f"{what.format(size=size)} {case}", "1", outcome))
            finally:
                subprocess.run(["umount", str(mount)], check=False)
    finally:
        mount.rmdir()
    return rows


# corrupt and truncated files

def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return random.Random(len(data)).randbytes(max(len(data), 64))


READERS = {  # each file the CLI reads in a run folder -> the commands that read it
    "checkpoint.pt": [["train", "--resume", "{run}"]],
    "config.yaml": [["train", "--resume", "{run}"]],
    "metrics.json": [["info", "{run}"]],
    "model.json": [["export", "{run}", "--onnx", "{work}/model.onnx"]],
    "model.safetensors": [["export", "{run}", "--onnx", "{work}/model.onnx"]],
}
CORRUPTIONS: dict[str, Callable[[str, bytes], bytes | None]] = {
    "truncated to half": lambda name, data: _truncate(data),
    "empty": lambda name, data: b"",
    "random bytes": lambda name, data: _garbage(data),
    "valid syntax, wrong type (a list)": lambda name, data: (
        b"[1, 2]\n" if name.endswith(".json") else b"- 1\n- 2\n" if name.endswith(".yaml") else None),
}


def corrupt_rows(work: Path, reference_folder: Path, budget: Budget) -> list[tuple[str, str, str]]:
    rows = []
    for name, commands in READERS.items():
        for corruption, corrupt in CORRUPTIONS.items():
            data = corrupt(name, (reference_folder / name).read_bytes())
            if data is None:
                continue
            for command in commands:
                if budget.spent(reserve=10):
                    return rows + [("(corrupt files)", "0", "time limit reached: the remaining cases were not run")]
                run = work / "corrupt"
                shutil.copytree(reference_folder, run)
                (run / name).write_bytes(data)
                args = [part.format(run=run, work=work) for part in command]
                outcome = error_outcome(slimkit(args)).replace(str(run), "OUT")
                if outcome.startswith(CLEAR) and name not in outcome:
                    outcome = f"UNCLEAR (does not name {name}): {outcome[len(CLEAR) + 2:]}"
                rows.append((f"{name} {corruption} -> `slimkit {command[0]}{' --resume' if '--resume' in command else ''}`",
                             "1", outcome))
                shutil.rmtree(run)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=21, help="SIGKILL trials (default: 21)")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the whole script (default: 900)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default: 0)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder, removed at the end)")
    args = parser.parse_args(argv)
    budget, rng = Budget(args.time_limit), random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="slimkit-faults-", dir=args.work))
    try:
        ref = work / "reference"
        began = time.monotonic()
        proc = start(["train", *TRAIN, "--out", str(ref)])
        _wait_for(_holds_lock(ref), proc)
        timing = {"lock": time.monotonic() - began}
        if proc.wait() != 0:
            print(f"the reference run failed: {proc.stderr.read()}", file=sys.stderr)
            return 1
        timing["total"] = time.monotonic() - began
        reference = result_of(ref)
        rows = sigkill_rows(work, reference, timing, args.trials, budget, rng)
        rows += two_writers_rows(work)
        rows += full_disk_rows(work, reference)
        rows += corrupt_rows(work, ref, budget)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| fault | trials | outcome |\n| --- | --- | --- |")
    for fault, trials, outcome in rows:
        print(f"| {fault} | {trials} | {outcome} |")
    bad = [row for row in rows if not row[2].startswith((CLEAR, RECOVERED, "finished, unmixed", "skipped"))]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} rows clear or recovered; "
          f"{time.monotonic() - budget.deadline + args.time_limit:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
