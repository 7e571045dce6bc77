"""`z2v report`: the numbers of a week, in self-contained Markdown, HTML and PNG files."""

from __future__ import annotations

import base64
import re
import struct
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest

from zero2vllm.tracker import progress
from zero2vllm.tracker.store import Store

from conftest import DATA

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(blob: bytes) -> tuple[int, int]:
    assert blob.startswith(PNG)
    return struct.unpack(">II", blob[16:24])


@pytest.fixture
def week1(home, z2v):
    """A week 1 in progress on the real clock (lab runs are stamped with it): time on two days,
    two items done (one by a passing summary), a profile run with numbers, three reviews."""
    monday = progress.monday_of(date.today())
    z2v("plan", "start", "--on", monday.isoformat())
    z2v("log", "w1.illustrated", "1h30m", "--on", monday.isoformat())
    z2v("log", "w1.intro", "45m", "--on", date.today().isoformat())
    z2v("done", "w1.illustrated")
    z2v("check", "summary", str(DATA / "summary_good.md"), "--week", "1")
    s = Store.open(home / "zero2vllm.db")
    s.add_lab_run("kv-cache", True, kind="profile", duration_s=12.5,
                  criteria=[{"name": "cache bytes equal the formula", "passed": True, "detail": ""}],
                  metrics={"bytes_per_token": 36864, "fit_slope": 36864.0, "fit_r2": 1.0})
    hours = sum(e.seconds for e in s.entries(since=monday.isoformat(),
                                             until=(monday + timedelta(days=6)).isoformat())) / 3600
    s.close()
    z2v("review", input="\n3\n" * 3)
    return hours


def test_markdown_report_has_the_weeks_numbers_and_embedded_charts(home, z2v, week1, tmp_path):
    out = tmp_path / "w1.md"
    msg = z2v("report", "--week", "1", "-o", str(out)).output
    assert f"Wrote {out}" in msg
    md = out.read_text()
    assert md.startswith("# Week 1: Transformer Fundamentals\n")
    assert f"{week1:.1f} h logged this week against a commitment of 10-15 h per week" in md
    assert "(the week's day blocks budget 12-14 h)" in md
    assert "## Items: 2 done, 7 open, 0 skipped" in md
    assert '| done | Read: "The Illustrated Transformer" by Jay Alammar (1 hour) | 1.50 h |  |' in md
    assert "| done | Output: Write 1-page summary in your own words |  | yes |" in md
    profile = next(line for line in md.splitlines() if "kv-cache (profile)" in line)
    assert "PASS 1/1" in profile and "12.5 s" in profile
    assert "bytes_per_token = 36864" in profile and "fit_r2 = 1" in profile
    assert "summary (summary) | PASS 3/3" in md and "words = 402" in md
    assert "Reviews during this week: 3 (0 Again, 0 Hard, 3 Good, 0 Easy)" in md
    assert "| What is attention computing? | learning | 1 |" in md
    # self-contained: three charts as data URIs, nothing else linked
    images = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", md)
    assert len(images) == 3 and all(i.startswith("data:image/png;base64,") for i in images)
    for uri in images:
        w, h = png_size(base64.b64decode(uri.split(",", 1)[1]))
        assert w > 300 and h > 100


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        for name, value in attrs:
            assert name not in ("href",) and not (name == "src" and not value.startswith("data:"))


def test_html_and_png_reports(home, z2v, week1, tmp_path):
    z2v("report", "--week", "1", "--format", "html")
    page = (home / "reports" / "week-1.html").read_text()
    parser = _Imgs()
    parser.feed(page)
    assert len(parser.srcs) == 3 and {"table", "h1", "h2", "style"} <= set(parser.tags)
    assert "<th>numbers</th>" in page and "bytes_per_token = 36864" in page
    for src in parser.srcs:
        png_size(base64.b64decode(src.split(",", 1)[1]))

    out = tmp_path / "w1.png"
    z2v("report", "--week", "1", "-o", str(out))  # the format follows the extension
    w, h = png_size(out.read_bytes())
    assert w > 600 and h > 900


def test_future_week_and_errors(home, z2v, week1):
    out = z2v("report", "--week", "3", "-o", "-").output
    assert "(future week)" in out
    assert "0.0 h logged this week" in out
    start = progress.monday_of(date.today()) + timedelta(days=14)
    assert f"| What is continuous batching? | new | 0 | from {start} | new |" in out
    assert "No lab runs for this week yet" in out
    assert z2v("report", "--week", "12", expect=2).output.startswith("Error: there is no week 12")
    assert "cannot go to stdout" in z2v("report", "--format", "png", "-o", "-", expect=2).output
