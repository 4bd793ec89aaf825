"""A headless Chromium, started offline, for the page tests (tests/viz/test_browser.py).

The browser is Debian's ``chromium`` (or ``$GROUNDATTN_BROWSER``). Every run gets a
new profile, and ``--host-resolver-rules`` makes any host name unresolvable, so
a page that tried to fetch something would fail to draw. Console messages of
the page are read from Chromium's log on stderr (``INFO:CONSOLE``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?:?\d*\] (.*)")


def find_browser() -> str | None:
    """The Chromium executable, or None."""
    chosen = os.environ.get("GROUNDATTN_BROWSER")
    if chosen:
        return chosen
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class Rendered:
    dom: str  # the document after its scripts ran
    console: list[str]  # the page's console messages


def render(browser: str, page: Path, *, screenshot: Path | None = None) -> Rendered:
    """Opens ``page`` from a file:// URL; returns its DOM and console; optionally a PNG."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [*OFFLINE_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000"]
        url = page.resolve().as_uri()
        done = subprocess.run(
            [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
        )
        if screenshot is not None:
            subprocess.run(
                [browser, *flags, "--hide-scrollbars", "--window-size=1500,1100",
                 f"--screenshot={screenshot}", url],
                capture_output=True, timeout=120, check=True,
            )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{browser} failed on {page}: {done.stderr[-2000:]}")
    console = [m.group(1) for m in map(CONSOLE.search, done.stderr.splitlines()) if m]
    return Rendered(done.stdout, console)
