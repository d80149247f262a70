"""The leaderboard page in headless Chromium: rows, sorting by the page's own JS, and a hostile model name
that must render as text without running.

`--dump-dom` prints the DOM after the page's scripts ran (`--virtual-time-budget`
lets them finish), so sorting through a `#sort=<column>` fragment shows up as
the new row order.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape

import pytest
from leaderboard_data import make_results

from evalkit.leaderboard import build_leaderboard

# Were it to run, it would rename the page (an alert() would block --dump-dom instead of failing clearly).
EVIL = "<script>document.title='pwned'</script>"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium not installed: apt-get install chromium")


def dump_dom(url: str, tmp_path) -> str:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "<html" in out.stdout, out.stderr[-2000:]
    return out.stdout


def row_order(dom: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'<tr data-upstream="([^"]*)"', dom)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    make_results(root / "results", EVIL)
    build_leaderboard(root / "results", root / "board", n_boot=200, plots=False)
    return root / "board" / "index.html"


def test_page_shows_every_row_and_runs_its_script(page, tmp_path):
    dom = dump_dom(page.as_uri(), tmp_path)
    assert sorted(row_order(dom)) == sorted(["fbank", "best", "close", "weak", EVIL])
    assert row_order(dom)[0] == "best"  # as built: by score
    assert "<title>evalkit leaderboard</title>" in dom


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("#sort=ks", ["best", "close", "weak", EVIL, "fbank"]),  # accuracy: highest first
        ("#sort=ks:asc", ["fbank", EVIL, "weak", "close", "best"]),
        ("#sort=upstream", ["<", "best", "close", "fbank", "weak"]),
        ("#sort=params", ["fbank", EVIL, "weak", "close", "best"]),
    ],
)
def test_sorting_through_the_url_fragment(page, tmp_path, fragment, expected):
    dom = dump_dom(page.as_uri() + fragment, tmp_path)
    order = row_order(dom)
    if fragment == "#sort=upstream":
        assert order[0] == EVIL and order[1:] == expected[1:]
    else:
        assert order == expected
    col, _, direction = fragment.removeprefix("#sort=").partition(":")
    assert f'data-sorted="{col}:' in dom
    if direction:
        assert f'data-sorted="{col}:{direction}"' in dom


def test_sorting_puts_missing_values_last(page, tmp_path):
    order = row_order(dump_dom(page.as_uri() + "#sort=asv", tmp_path))
    assert order[:2] == ["best", "fbank"]  # EER: lowest first; the three without ASV follow
    assert set(order[2:]) == {"close", "weak", EVIL}


def test_hostile_name_renders_as_text_and_does_not_run(page, tmp_path):
    dom = dump_dom(page.as_uri(), tmp_path)
    assert "<title>evalkit leaderboard</title>" in dom and "pwned" not in dom.split("</title>")[0]
    assert dom.count("<script") == 1  # the page's own script only
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
