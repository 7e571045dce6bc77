"""`z2v check summary`: length, concept coverage and copied passages, on three committed texts."""

from __future__ import annotations

import json

from zero2vllm.tracker.store import Store

from conftest import DATA

OUTPUT_ITEM = "w1.write-1-page-summary-own"


def open_store(home) -> Store:
    return Store.open(home / "zero2vllm.db")


def check(z2v, name: str, expect: int, *extra: str):
    return z2v("check", "summary", str(DATA / f"summary_{name}.md"), "--week", "1", *extra, expect=expect)


def test_good_summary_passes_and_is_recorded(home, z2v):
    out = check(z2v, "good", 0).output
    assert "PASS  length: 402 words" in out
    assert "PASS  key concepts: 3 of 3 covered" in out
    assert "PASS  own words: 0 of 402 words (0%)" in out
    assert "at least half of the content words" in out  # the method is explained
    assert f"PASSED: recorded as the note of {OUTPUT_ITEM} and marked it done" in out
    s = open_store(home)
    assert s.note(OUTPUT_ITEM) == (DATA / "summary_good.md").read_text()
    assert s.state(OUTPUT_ITEM).status == "done"
    run = s.lab_runs("summary")[-1]
    assert run["passed"] and run["kind"] == "summary"
    assert run["metrics"]["week"] == 1 and run["metrics"]["words"] == 402
    assert [c["name"] for c in run["criteria"]] == ["length", "key concepts", "own words"]
    s.close()
    # both changes are journalled: undo takes back the status, then the note
    z2v("undo")
    z2v("undo")
    s = open_store(home)
    assert s.note(OUTPUT_ITEM) is None and s.state(OUTPUT_ITEM) is None
    s.close()


def test_sixty_words_fail_on_length_and_record_nothing(home, z2v):
    out = check(z2v, "short", 1).output
    assert "FAIL  length: 60 words" in out
    assert "too short: 60 words, a one-page summary has at least 250" in out
    assert "own words: 0 of 60" in out
    s = open_store(home)
    assert s.note(OUTPUT_ITEM) is None
    assert s.state(OUTPUT_ITEM) is None
    assert s.lab_runs("summary")[-1]["passed"] is False
    s.close()


def test_pasted_plan_sentences_are_flagged(home, z2v):
    result = json.loads(check(z2v, "pasted", 1, "--json").output)
    assert result["passed"] is False and result["recorded_on"] is None
    assert result["length_ok"] is True  # long enough and on topic: only the copying fails it
    assert result["concepts_needed"] <= sum(c["covered"] for c in result["concepts"])
    assert result["copied_fraction"] > 0.5
    passages = [p["text"] for p in result["copied"]]
    assert any("Follow Karpathy's code but type it yourself" in p for p in passages)
    assert any("Memory is the bottleneck (not compute)" in p for p in passages)
    assert all(p["plan_lines"] for p in result["copied"])
    out = check(z2v, "pasted", 1).output
    assert "of the words are copied from the plan (at most 10%); say it in your own words" in out
    assert "plan lines 43-" in out  # where in the plan each passage comes from


def test_coverage_names_missing_concepts_and_bad_input(home, z2v, tmp_path):
    own = tmp_path / "s.md"
    own.write_text("Paged attention keeps the KV cache in fixed-size blocks. " * 40)
    out = z2v("check", "summary", str(own), "--week", "3", expect=1).output
    assert "[covered] Why does PagedAttention waste less memory?" in out
    assert "[missing] What is continuous batching?" in out
    assert "covers 1 of the week's 3 key concepts; at least 2 needed" in out
    assert z2v("check", "summary", str(own), "--week", "9", expect=2).output.startswith("Error: there is no week 9")
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    assert "is empty" in z2v("check", "summary", str(empty), "--week", "1", expect=2).output
