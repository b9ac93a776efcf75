#!/usr/bin/env python3
"""Check that a slimkit HTML report renders in a real browser (headless Chromium).

What it checks:
  1. `chromium --headless --screenshot=PATH --window-size=1200,3000 file://REPORT` writes a
     screenshot that is not blank (grey-level variance and non-background pixels);
  2. `chromium --headless --dump-dom file://REPORT` shows `<body data-images-loaded="N">` with N
     equal to the number of <img> in the page: the report's inline script counted every embedded
     PNG as decoded (naturalWidth > 0) on the load event;
  3. Chromium's console log (`--enable-logging=stderr --v=0`) has no "Uncaught" error or
     console.error line.

Usage (from the repository root):
  # check an existing report
  .venv/bin/python scripts/check_report_in_chromium.py --report report.html --screenshot shot.png
  # build a report of run folders first, then check it
  .venv/bin/python scripts/check_report_in_chromium.py --runs RUN1 RUN2 --out /tmp/report.html
  # train the three reference runs (dense, unstructured MEST+EM&S, block MEST+EM&S; synthetic
  # data, seconds each) into DIR if they are not there yet, report and check them
  .venv/bin/python scripts/check_report_in_chromium.py --example-runs /tmp/report-runs --screenshot shot.png

Needs Chromium on PATH (Debian: `apt-get install chromium`). Exit status 0 when every check
passes, 1 when one fails, 2 on usage errors (no Chromium, no report).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

EXAMPLE_RUNS = {  # name -> `slimkit train` flags (besides the common ones below)
    "dense": [],
    "mest-ems-unstructured": ["--method", "mest-ems", "--sparsity", "0.9"],
    "mest-ems-block": ["--method", "mest-ems", "--sparsity", "0.9", "--scheme", "block",
                       "--scheme-options", "{block: [8, 1], prune: cols}"],
}
COMMON = ["--model", "lenet5", "--data", "synthetic", "--epochs", "3", "--progress", "none"]


def example_runs(folder: Path) -> list[Path]:
    """The reference runs in `folder`, trained now where missing."""
    from slimkit.cli import main as slimkit_main

    runs = []
    for name, flags in EXAMPLE_RUNS.items():
        run = folder / name
        if not (run / "metrics.json").is_file():
            print(f"training {run} ...", flush=True)
            if slimkit_main(["train", *COMMON, *flags, "--out", str(run)]) != 0:
                raise SystemExit(f"training {run} failed")
        runs.append(run)
    return runs


def main(argv: list[str] | None = None) -> int:
    summary, details = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--report", type=Path, help="an existing HTML report to check")
    source.add_argument("--runs", nargs="+", type=Path, metavar="RUN",
                        help="run folders: write their report, then check it")
    source.add_argument("--example-runs", type=Path, metavar="DIR",
                        help="train the reference runs into DIR (if missing), write their report, then check it")
    parser.add_argument("--out", type=Path, help="where --runs/--example-runs write the report (default: a temp file)")
    parser.add_argument("--title", default="slimkit report",
                        help="title of the report written by --runs/--example-runs")
    parser.add_argument("--screenshot", type=Path, help="where to keep the screenshot (default: a temp file)")
    parser.add_argument("--chromium",
                        help="Chromium binary (default: chromium / chromium-browser / google-chrome on PATH)")
    args = parser.parse_args(argv)

    try:
        from slimkit.report import write_html_report
        from slimkit.report.browser import check_report, find_chromium
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without install
        from slimkit.report import write_html_report
        from slimkit.report.browser import check_report, find_chromium

    binary = args.chromium or find_chromium()
    if binary is None:
        print("error: no Chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="slimkit-report-check-") as tmp:
        report = args.report
        if report is None:
            runs = args.runs if args.runs else example_runs(args.example_runs)
            report = write_html_report(runs, args.out or Path(tmp) / "report.html", title=args.title)
            print(f"wrote {report} ({report.stat().st_size:,} bytes) from {len(runs)} run(s)")
        elif not report.is_file():
            print(f"error: {report} does not exist", file=sys.stderr)
            return 2
        check = check_report(report, args.screenshot or Path(tmp) / "screenshot.png", chromium=binary)
        print(f"chromium: {binary}")
        print(check.summary())
        for problem in check.problems:
            print(f"  - {problem}")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
