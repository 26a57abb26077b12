"""report.html opened in headless Chromium: every chart drawn, nothing fetched, the filter works."""

from __future__ import annotations

from pathlib import Path

import pytest
from replay_build import check_report_in_browser, sample

from assist.replay.parse import parse_logs
from assist.replay.report import build_report, write_report

pytestmark = pytest.mark.browser

def test_report_html_renders_every_chart(tmp_path: Path) -> None:
    paths = write_report(build_report(sample(), parse_logs("")), tmp_path)
    seen = check_report_in_browser(paths["html"])
    for chart, info in seen["charts"].items():  # type: ignore[union-attr]
        assert info["width"] > 100 and info["height"] > 40, f"{chart} has no size: {info}"
        assert info["marks"] > 0, f"{chart} is empty"
    assert seen["errors"] == []
    # Only the page itself was loaded: no font, script, image or beacon from anywhere.
    assert all(u.startswith("file://") for u in seen["requests"]), seen["requests"]  # type: ignore[union-attr]
    assert seen["rows"] > 0 and seen["visible_after_filter"] == 0
