"""Every HTML page `visualize` writes, opened in a real headless browser with no network.

Skips when no Chromium is installed, unless GROUNDATTN_REQUIRE_BROWSER is set
(.ci/run sets it after installing Debian's chromium): then it fails.
"""

import json
import os
import re

import pytest
from browser import find_browser, render
from PIL import Image

from groundattn.viz.run import OUTPUTS, visualize

IMAGE = "100001"


@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        reason = "no Chromium found (apt-get install chromium, or set GROUNDATTN_BROWSER)"
        if os.environ.get("GROUNDATTN_REQUIRE_BROWSER"):
            pytest.fail(f"GROUNDATTN_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def pages(scenes, model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("pages")
    files = visualize(
        out, data_root=scenes, split="val", image_id=IMAGE, models=model_dirs, outputs=OUTPUTS,
        dpi=40,
    )  # fmt: skip
    return out, files, json.loads((out / "sample.json").read_text())


def count(dom: str, pattern: str) -> int:
    return len(re.findall(pattern, dom))


def test_attention_page_draws_offline_with_no_console_message(browser, pages, tmp_path):
    out, files, sample = pages
    page = out / "attention.html"
    assert page in files
    shot = tmp_path / "attention.png"
    rendered = render(browser, page, screenshot=shot)
    dom = rendered.dom
    assert rendered.console == []
    assert 'data-groundattn="drawn"' in dom and 'data-clipped="0"' in dom
    T = sum(not label.startswith("[IMG:") and label != "[END]" for label in
            sample["models"]["direct"]["labels"])  # fmt: skip
    R = len(sample["region_names"])
    assert count(dom, r'<section class="ga-panel" data-model="') == 2  # side by side
    assert count(dom, r'class="ga-token ga-text"') == 2 * T
    assert count(dom, r'class="ga-token ga-region"') == 2 * R
    assert count(dom, r'<line class="ga-line"') > R  # lines weighted by attention
    assert count(dom, r'class="ga-grounded"') == 2 * len(sample["grounded_regions"])
    assert "model direct" in dom and "model none" in dom and f"image {IMAGE}" in dom
    # Nothing outside the file: every src/href is a data: URI or a fragment.
    for link in re.findall(r'(?:src|href)="([^"]*)"', dom):
        assert link.startswith(("data:", "#")), link
    with Image.open(shot) as png:
        assert png.size == (1500, 1100)
        assert len(png.convert("L").getcolors(256)) > 20  # grey levels: not a blank page


def test_bertviz_views_say_offline_that_they_need_a_network(browser, pages):
    out, files, _ = pages
    for view in ("head_view", "model_view"):
        page = out / "direct" / f"{view}.html"
        assert page in files
        dom = render(browser, page).dom
        assert "needs a network" in dom
        assert '<p id="ga-offline" style' in dom  # the hidden attribute is gone: shown
