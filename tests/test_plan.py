"""The plan text format: parsing, ids, annotations, round trip, bad plans."""

from __future__ import annotations

import pytest

from zero2vllm.tracker import plan as P
from zero2vllm.tracker.durations import DurationError, format_duration, parse_duration
from zero2vllm.paths import default_plan_path

from conftest import DATA


def read(name: str) -> str:
    return (DATA / name).read_bytes().decode()


@pytest.mark.parametrize("name", ["seed_plan.txt", "plan_rust.txt", "plan_go_crlf.txt"])
def test_round_trip_is_byte_exact(name):
    text = read(name)
    assert P.emit(P.parse(text)) == text


def test_bundled_plan_round_trips_and_keeps_the_users_lines(seed_text):
    text = default_plan_path().read_text()
    assert P.emit(P.parse(text)) == text
    assert text.startswith(seed_text), "the user's own lines must stay untouched, in order"


def test_seed_structure(seed_text):
    plan = P.parse(seed_text)
    assert plan.title == "8-Week Plan: Zero to vLLM Contributor"
    assert plan.announced_weeks == 8
    c = plan.commitment
    assert (c.weekly_min, c.weekly_max, c.weekday_hours, c.weekend_min, c.weekend_max) == (10, 15, 2, 5, 10)
    assert [w.number for w in plan.weeks] == [1, 2, 3]
    w1 = plan.week(1)
    assert [b.label for b in w1.blocks] == ["Monday-Tuesday", "Wednesday-Thursday", "Friday", "Weekend"]
    assert [b.weekdays for b in w1.blocks] == [(0, 1), (2, 3), (4,), (5, 6)]
    assert (w1.blocks[3].hours_min, w1.blocks[3].hours_max) == (6, 8)
    intro = plan.item("w1.intro-large-language-models")
    assert intro.kind == "watch" and intro.minutes == 60
    assert intro.url == "https://www.youtube.com/watch?v=XfpMkf4rD6E"
    assert intro.progress.seconds == 30 * 60 and intro.progress.status == "in_progress"
    assert plan.item("w1.illustrated-transformer").url == "https://jalammar.github.io/illustrated-transformer/"
    assert plan.item("w1.lets-build-gpt-scratch").minutes == 120  # "(2 hours, can speed up)"
    hands_on = plan.item("w1.implement-tiny-transformer")
    assert hands_on.kind == "hands-on"
    assert [d.text for d in hands_on.details] == [
        "Follow Karpathy's code but type it yourself", "Use PyTorch",
        "Train on tiny dataset (Shakespeare text or similar)"]
    deliverable = plan.item("w1.working-character-level")
    assert deliverable.kind == "deliverable" and deliverable.parent == hands_on.id
    concept = w1.concepts[0]
    assert (concept.question, concept.answer) == ("What is attention computing?", "similarity between query and keys")
    insight = plan.week(2).concepts[0]
    assert insight.kind == "insight" and (insight.question, insight.answer) == ("Memory is the bottleneck", "not compute")
    kinds = {i.kind for i in plan.items()}
    assert {"watch", "read", "google", "output", "focus", "understand", "hands-on", "project", "deliverable", "browse"} <= kinds


def test_bundled_plan_has_eight_weeks_with_drafts_marked(seed_text):
    plan = P.parse(default_plan_path().read_text())
    assert [w.number for w in plan.weeks] == list(range(1, 9))
    assert [w.draft for w in plan.weeks] == [False] * 3 + [True] * 5
    seed_items = {i.id for i in P.parse(seed_text).items()}
    for item in plan.items():
        assert item.draft == (item.id not in seed_items), item.id
    added_w3 = [d for d in plan.item("w3.install-run-vllm").details]
    assert added_w3 and all(d.draft for d in added_w3)
    for item in plan.items():
        if item.url:
            assert item.url.startswith("https://"), item.url


def test_ids_are_stable_when_other_lines_change(seed_text):
    before = {i.id: i.title for i in P.parse(seed_text).items()}
    edited = seed_text.replace("Use PyTorch\n", "Use PyTorch\nAdd a new step\n").replace(
        "Friday (2 hours):\n", "Friday (2 hours):\n\nWatch: Something new (10 min)\n")
    after = {i.id: i.title for i in P.parse(edited).items()}
    assert set(before) <= set(after)
    assert all(len(i) <= 40 for i in after)


def test_ids_are_unique():
    text = "WEEK 1: A\nMonday (1 hour):\nRead: Same title\nRead: Same title\nWatch: Same title\n"
    ids = [i.id for i in P.parse(text).items()]
    assert ids == ["w1.same-title", "w1.same-title-2", "w1.same-title-3"]


@pytest.mark.parametrize("annotation, expected", [
    ("watched for 30 min", P.Progress(seconds=1800, status="in_progress")),
    ("read 2 of 4 sections", P.Progress(status="in_progress", done=2, total=4, unit="sections")),
    ("done", P.Progress(status="done")),
    ("1h 20m so far", P.Progress(seconds=4800, status="in_progress")),
    ("spent 45 minutes", P.Progress(seconds=2700, status="in_progress")),
    ("done (1h)", P.Progress(seconds=3600, status="done")),
    ("skipped", P.Progress(status="skipped")),
    ("75%", P.Progress(status="in_progress", done=75, total=100, unit="%")),
])
def test_annotations(annotation, expected):
    text = f"WEEK 1: A\nMonday (1 hour):\nRead: Some paper (1 hour) - https://x.org/p - {annotation}\n"
    item = P.parse(text).items()[0]
    assert item.annotation == annotation
    assert item.progress == expected
    assert item.url == "https://x.org/p"


def test_url_separator_is_not_an_annotation():
    item = P.parse("WEEK 1: A\nRead: Paper - https://x.org/done\n").items()[0]
    assert item.annotation is None and item.url == "https://x.org/done"


def test_emit_writes_progress_in_the_users_style(seed_text):
    plan = P.parse(seed_text)
    intro = plan.item("w1.intro-large-language-models")
    read = plan.item("w1.illustrated-transformer")
    text = P.emit(plan, {
        intro.id: P.format_annotation(intro, "in_progress", 45 * 60),
        read.id: P.format_annotation(read, "done", 0),
    })
    lines = text.splitlines()
    assert lines[intro.line - 1].endswith("XfpMkf4rD6E - watched for 45 min")
    assert lines[read.line - 1].endswith("illustrated-transformer/ - done")
    assert sum(a != b for a, b in zip(lines, seed_text.splitlines())) == 2
    again = P.parse(text)
    assert again.item(intro.id).progress.seconds == 45 * 60
    assert again.item(read.id).progress.status == "done"


@pytest.mark.parametrize("text, line_no, words", [
    ("", 1, "empty"),
    ("   \n\n", 1, "empty"),
    ("Title\nRead: something\n", 2, "before any 'WEEK N:'"),
    ("Title\nMonday (2 hours):\nWEEK 1: A\n", 2, "day block comes before"),
    ("Just a title\nsome words\n", 1, "no 'WEEK N: title' heading"),
    ("WEEK 1: A\nRead: x\nWEEK 1: B\n", 3, "week 1 appears twice"),
])
def test_bad_plans_name_the_line(text, line_no, words):
    with pytest.raises(P.PlanError) as exc:
        P.parse(text)
    assert exc.value.line_no == line_no
    assert words in str(exc.value)
    assert f"line {line_no}" in str(exc.value)


def test_binary_files_are_refused():
    with pytest.raises(P.PlanError, match="line 2: this is not a text file"):
        P.decode(b"WEEK 1: A\n\x00\x01\x02")
    with pytest.raises(P.PlanError, match="not UTF-8"):
        P.decode(b"WEEK 1: A\n\xff\xfe\xfa")


def test_day_names_and_ranges():
    assert P.parse_days("Monday-Tuesday") == (0, 1)
    assert P.parse_days("Weekend") == (5, 6)
    assert P.parse_days("Mon, Wed & Fri") == (0, 2, 4)
    assert P.parse_days("Saturday and Sunday") == (5, 6)
    assert P.parse_days("Fri-Mon") == (0, 4, 5, 6)
    assert P.parse_days("Evening") == ()


@pytest.mark.parametrize("text, seconds", [
    ("30m", 1800), ("1h15m", 4500), ("1.5h", 5400), ("90 minutes", 5400), ("1h 20m", 4800),
    ("2 hours", 7200), ("45 min", 2700), ("1 hour 5 min", 3900),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "abc", "1x", "0m", "30m extra"])
def test_bad_durations(text):
    with pytest.raises(DurationError):
        parse_duration(text)


def test_format_duration():
    assert format_duration(4800) == "1h 20m"
    assert format_duration(1800, style="long") == "30 min"
    assert format_duration(3600 * 2 + 60 * 5, style="long") == "2 hours 5 min"
    assert format_duration(42) == "42s"
