"""pr-merged and `z2v contrib`: a PR followed through recorded GitHub responses
(tests/data/github/<stage>/, replayed by ReplayClient) at every stage. No test touches the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import contrib_fixture as cf
from zero2vllm.contrib import github
from zero2vllm.labs import get_lab
from zero2vllm.labs.check import run_check
from zero2vllm.tracker.store import Store

GH = Path(__file__).parent / "data" / "github"
URL = "https://github.com/vllm-project/vllm/pull/31234"
NOW = "2026-11-30T12:00:00"


@pytest.fixture(autouse=True)
def _offline(home, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_NOW", NOW)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)

    def no_network(*a, **k):
        raise AssertionError("a test tried to reach GitHub")

    monkeypatch.setattr(github.UrllibClient, "get", no_network)


def follow(stage: str, **kw) -> github.PRStatus:
    return github.follow(URL, github.GitHub(github.ReplayClient(GH / stage), **kw))


@pytest.mark.parametrize("stage, expected", [
    ("opened", "waiting for a first review"),
    ("reviewed", "1 review comment(s) to answer"),
    ("answered", "reviewed, waiting for the ready label"),
    ("ready", "ready, CI green"),
    ("merged", "merged"),
])
def test_every_stage_of_the_timeline(stage, expected):
    assert follow(stage).stage() == expected


def test_the_client_is_injected_and_sends_the_token():
    seen = []

    class Recorder(github.ReplayClient):
        def get(self, path, headers):
            seen.append(headers.get("Authorization"))
            return super().get(path, headers)

    github.follow(URL, github.GitHub(Recorder(GH / "merged"), token="t0ken"))
    assert seen and set(seen) == {"Bearer t0ken"}
    github.follow(URL, github.GitHub(Recorder(GH / "merged"), token=""))
    assert seen[-1] is None  # unauthenticated without a token


def test_ping_after_seven_days_without_review():
    from datetime import datetime, timezone

    pr = follow("opened")
    assert pr.ping(datetime(2026, 11, 25, tzinfo=timezone.utc)) is None  # 5 days
    assert "polite" in pr.ping(datetime(2026, 11, 28, tzinfo=timezone.utc))
    assert follow("reviewed").ping(datetime(2026, 12, 28, tzinfo=timezone.utc)) is None


def test_github_errors_are_one_line():
    class Limited:
        def get(self, path, headers):
            return 403, {"message": "API rate limit exceeded for 1.2.3.4."}

    with pytest.raises(github.GitHubError, match="GITHUB_TOKEN"):
        github.follow(URL, github.GitHub(Limited()))
    with pytest.raises(github.GitHubError, match="404"):
        github.follow(URL.replace("31234", "1"), github.GitHub(github.ReplayClient(GH / "merged")))
    with pytest.raises(github.GitHubError, match="not a pull request URL"):
        github.parse_pr_url("https://github.com/vllm-project/vllm/issues/5")


def lab(stage, tmp_path, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_GITHUB_REPLAY", str(GH / stage))
    folder = tmp_path / "pr-merged"
    folder.mkdir(exist_ok=True)
    (folder / "pr-url.txt").write_text(f"# my PR\n{URL}\n")
    result = run_check(get_lab("pr-merged"), folder)
    return result, {c["name"]: c for c in result.criteria}


def test_lab_merged_passes(tmp_path, monkeypatch):
    result, _ = lab("merged", tmp_path, monkeypatch)
    assert result.passed, result.criteria
    assert result.metrics["stage"] == "merged"


def test_lab_explains_dco_missing_ready_and_suggests_a_ping(tmp_path, monkeypatch):
    result, crit = lab("opened", tmp_path, monkeypatch)
    assert not result.passed
    assert "DCO check failed" in crit["CI green"]["detail"]
    assert "no `ready` label" in crit["ready label"]["detail"]
    assert "only after a maintainer adds `ready`" in crit["ready label"]["detail"]
    assert "polite" in result.metrics["ping"]
    assert crit["opened"]["passed"] and not crit["merged"]["passed"]


def test_lab_names_the_unanswered_comment(tmp_path, monkeypatch):
    _, crit = lab("reviewed", tmp_path, monkeypatch)
    detail = crit["review comments answered"]["detail"]
    assert "maintainer-1 on vllm/utils.py" in detail and crit["CI green"]["passed"]
    _, crit = lab("ready", tmp_path, monkeypatch)
    assert [n for n, c in crit.items() if not c["passed"]] == ["merged"]


def test_lab_without_url_says_where_to_put_it(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_check(get_lab("pr-merged"), tmp_path / "empty")
    assert "pr-url.txt" in result.criteria[0]["detail"]


# -- z2v contrib ---------------------------------------------------------------------------
def test_contrib_init_stores_the_clone_and_status_reads_it(z2v, home, tmp_path, monkeypatch):
    repo = cf.state_repro_fixed(tmp_path)
    out = z2v("contrib", "init", str(repo), "--base", "main", "--pr", URL).output
    assert "1 commit(s) ahead of main" in out
    store = Store.open(home / "zero2vllm.db")
    rows = dict(store.conn.execute("SELECT key, value FROM contrib_setting").fetchall())
    assert rows == {"clone": str(repo.resolve()), "base": "main", "pr_url": URL}
    store.close()
    # the stored clone is what a check outside any git tree works on: `z2v check` reads it
    # from the store and passes it in (the check process never opens the store)
    elsewhere = tmp_path / "lab"
    elsewhere.mkdir()
    out = z2v("check", "repro", str(elsewhere)).output
    assert "PASSED" in out and str(repo.resolve()) in out
    assert not run_check(get_lab("repro"), elsewhere).passed  # nothing passed in: no clone
    monkeypatch.setenv("ZERO2VLLM_GITHUB_REPLAY", str(GH / "opened"))
    doc = json.loads(z2v("contrib", "status", "--json").output)
    assert doc["pr"]["stage"] == "waiting for a first review" and "polite" in doc["pr"]["ping"]
    assert doc["settings"]["clone"] == str(repo.resolve())
    # re-running init with only --pr keeps the base
    z2v("contrib", "init", str(repo), "--pr", URL.replace("31234", "31235"))
    store = Store.open(home / "zero2vllm.db")
    assert dict(store.conn.execute("SELECT key, value FROM contrib_setting").fetchall())["base"] == "main"
    store.close()


def test_contrib_init_bad_input_is_one_line(z2v, tmp_path):
    r = z2v("contrib", "init", str(tmp_path / "nope"), expect=2)
    assert "is not a directory" in r.output
    r = z2v("contrib", "init", str(tmp_path), expect=2)
    assert "not a git work tree" in r.output
    repo = cf.upstream(tmp_path / "x")
    assert "no ref 'develop'" in z2v("contrib", "init", str(repo), "--base", "develop", expect=2).output
    assert "not a pull request URL" in z2v("contrib", "init", str(repo), "--pr", "nope", expect=2).output
    assert "no vLLM clone yet" in z2v("contrib", "status").output  # nothing was stored


def test_predictions_are_stored_hashed_and_locked(z2v, home):
    from zero2vllm.contrib import predictions
    from zero2vllm.tracker import contrib_settings as settings

    z2v("contrib", "predict", "code-map", "token_budget", "vllm/v1/core/sched/scheduler.py::Scheduler.schedule")
    store = Store.open(home / "zero2vllm.db")
    row = dict(store.conn.execute("SELECT * FROM prediction").fetchone())
    assert "scheduler" not in json.dumps(row) and row["answer"] is None and len(row["digest"]) == 64
    assert not predictions.matches(row, "vllm/other.py::X.y")
    assert predictions.matches(row, " VLLM/v1/core/sched/scheduler.py::Scheduler.schedule ")
    store.close()
    r = z2v("contrib", "predict", "code-map", "token_budget", "x", expect=2)
    assert "already locked" in r.output


def test_a_lab_folder_in_another_repository_uses_the_stored_clone(z2v, tmp_path):
    repo = cf.state_repro_fixed(tmp_path / "a")
    z2v("contrib", "init", str(repo))
    dotfiles = tmp_path / "home"
    (dotfiles / "repro").mkdir(parents=True)
    cf.git(dotfiles, "init", "-q")
    from zero2vllm.contrib import repo as git

    clone = z2v.json("contrib", "status")["settings"]["clone"]
    assert git.find_clone(dotfiles / "repro", clone) == repo.resolve()
    assert git.find_clone(repo / "tests") == repo
