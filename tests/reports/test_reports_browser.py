"""The report in a real headless browser (Debian's chromium): no console errors, no network, a drawn
Pareto plot, and the front table sorts on click. Skipped without chromium unless REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image
from report_browser import check_page, find_chromium
from report_fixtures import write_run

from reports import load_run, write_html

_MISSING = "chromium is not installed (apt-get install -y chromium, or set $CHROMIUM)"


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    """Skip without chromium, except where REQUIRE_CHROMIUM=1 (CI) makes that a failure."""
    if find_chromium() is None:
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"REQUIRE_CHROMIUM=1 but {_MISSING}")
        pytest.skip(_MISSING)


_FRONT_ROWS = (
    "Array.from(document.querySelectorAll('#front-table tbody tr')).map(r => r.cells[0].textContent)"
)
_SORT_BY_QUALITY = f"""(function () {{
  var heads = Array.from(document.querySelectorAll('#front-table thead th'));
  var th = heads.find(h => h.textContent === 'quality');
  th.click(); var up = {_FRONT_ROWS};
  th.click(); var down = {_FRONT_ROWS};
  return {{up: up, down: down}};
}})()"""


def _non_blank(png: bytes) -> tuple[int, float]:
    """Distinct colours and the share of pixels that are not (near) white."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    grey = image.convert("L")
    inked = sum(grey.histogram()[:240])
    return len(colours), inked / (image.width * image.height)


@pytest.mark.slow
def test_report_loads_cleanly_and_draws_the_front(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "run <&> 'quoted'"))
    path = write_html(run, tmp_path / "report.html")
    check = check_page(
        path,
        expressions={
            "sorted": _SORT_BY_QUALITY,
            "plots": "document.querySelectorAll('.js-plotly-plot').length",
        },
    )

    assert check.errors == []
    assert check.remote_requests == []
    assert check.box["width"] > 600 and check.box["height"] > 300
    image = Image.open(io.BytesIO(check.screenshot))
    assert image.size == (round(check.box["width"]), round(check.box["height"]))
    colours, inked = _non_blank(check.screenshot)
    assert colours > 50, "the Pareto plot screenshot is (nearly) one colour"
    assert inked > 0.01, f"only {inked:.2%} of the Pareto plot has ink"

    by_quality = [str(t) for t in run.front.sort_values("quality")["trial"]]
    assert check.values["sorted"] == {"up": by_quality, "down": by_quality[::-1]}
    assert check.values["plots"] == 4


def test_blank_page_is_caught(tmp_path: Path) -> None:
    """The checks can fail: a page with an empty plot div and a script error."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><div id="pareto-plot" style="width:800px;height:400px"></div>'
        "<script>undefinedFunction();</script><script>console.error('boom')</script></body></html>"
    )
    check = check_page(page, timeout=30, render_wait=0.5)
    assert any("undefinedFunction" in e for e in check.errors)
    assert any("boom" in e for e in check.errors)
    colours, inked = _non_blank(check.screenshot)
    assert colours == 1 and inked == 0.0
