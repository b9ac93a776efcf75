"""Check that an HTML report renders in a real browser: headless Chromium takes a screenshot and
dumps the DOM after the page's load event. The report's inline script writes how many images
decoded into `<body data-images-loaded=...>`, so the dumped DOM proves every plot decoded; the
browser's console log (on stderr) shows any uncaught JavaScript error.

Used by `scripts/check_report_in_chromium.py` and `tests/report/test_chromium.py`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1200, 3000)


def find_chromium() -> str | None:
    """The first Chromium/Chrome binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class BrowserCheck:
    screenshot: Path
    images: int  # <img> elements in the dumped DOM
    images_loaded: int | None  # the page's own count of decoded images (None: script did not run)
    pixel_std: float  # standard deviation of the screenshot's grey levels (0 = blank)
    ink_fraction: float  # fraction of screenshot pixels that are not the background colour
    js_errors: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.images == 0:
            found.append("the dumped DOM has no <img>")
        if self.images_loaded != self.images:
            found.append(f"{self.images_loaded} of {self.images} images decoded (data-images-loaded)")
        if self.pixel_std < 1.0 or self.ink_fraction < 0.01:
            found.append(f"screenshot looks blank (grey-level std {self.pixel_std:.2f}, "
                         f"{self.ink_fraction:.2%} non-background pixels)")
        found += [f"JavaScript error: {line}" for line in self.js_errors]
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        status = "OK" if self.ok else "FAILED: " + "; ".join(self.problems)
        size = self.screenshot.stat().st_size
        return (f"screenshot {self.screenshot} ({size:,} bytes, grey std {self.pixel_std:.1f}, "
                f"{self.ink_fraction:.1%} ink); images decoded {self.images_loaded}/{self.images}; "
                f"JS errors {len(self.js_errors)}; {status}")


def _run_chromium(binary: str, args: list[str], profile: str, timeout: float) -> subprocess.CompletedProcess:
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result


def _console_errors(stderr: str) -> list[str]:
    """Console lines of uncaught exceptions or console.error calls from Chromium's log."""
    return [
        line.strip() for line in stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or ":ERROR:CONSOLE" in line)
    ]


def _pixels(path: Path) -> tuple[float, float]:
    from PIL import Image

    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    background = np.bincount(grey.astype(np.uint8).ravel()).argmax()
    return float(grey.std()), float((np.abs(grey - background) > 8).mean())


def check_report(
    html_file: str | Path, screenshot: str | Path, *, chromium: str | None = None, window: tuple[int, int] = WINDOW,
    timeout: float = 120.0,
) -> BrowserCheck:
    """Render `html_file` in headless Chromium: screenshot to `screenshot`, dump the DOM, read
    the console. Raises FileNotFoundError when no Chromium is found."""
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}); "
                                "on Debian: apt-get install chromium")
    url = Path(html_file).resolve().as_uri()
    screenshot = Path(screenshot).resolve()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="slimkit-chromium-") as profile:
        shot = _run_chromium(binary, [f"--window-size={window[0]},{window[1]}", f"--screenshot={screenshot}", url],
                             profile, timeout)
        dump = _run_chromium(binary, [f"--window-size={window[0]},{window[1]}", "--dump-dom", url], profile, timeout)
    if not screenshot.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {screenshot}:\n{shot.stderr[-2000:]}")
    body = re.search(r"<body\b[^>]*>", dump.stdout)
    loaded = re.search(r"data-images-loaded=\"(\d+)\"", body.group(0)) if body else None
    std, ink = _pixels(screenshot)
    return BrowserCheck(
        screenshot=screenshot,
        images=len(re.findall(r"<img\b", dump.stdout)),
        images_loaded=int(loaded.group(1)) if loaded else None,
        pixel_std=std,
        ink_fraction=ink,
        js_errors=_console_errors(shot.stderr) + _console_errors(dump.stderr),
    )
