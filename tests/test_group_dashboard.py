"""The group dashboard serves what the sync projections hold, to whom it may: hours per plan
week, who has gone quiet, lab pass rates and the criteria that fail most, the opt-in board, and
notes only when shared. Bad query parameters are a 400 with a one-line message."""

from __future__ import annotations

import json
import re
import secrets

import pytest

psycopg = pytest.importorskip("psycopg")

from zero2vllm.group import db, sessions  # noqa: E402

PLAN = """Test Plan
Time commitment: 6-8 hours per week
WEEK 1: Basics
Monday-Tuesday (2 hours):
Watch: Something (1 hour)
Weekend (4 hours):
HANDS-ON: Build it
WEEK 2: More
Monday (3 hours):
Read: Paper
"""
NOW = "2026-12-02T12:00:00+00:00"  # a Wednesday: week 2 of a plan started on Monday 2026-11-23

def _fresh_app(pg_url):
    from zero2vllm.group import app as app_module

    return app_module.create_app(pg_url, secret_key=b"k" * 32, pool_size=2, testing=True)


class Group:
    def __init__(self, conn):
        self.conn = conn

    def person(self, name, role="learner", **flags) -> int:
        # no password: these tests log in by session row, and argon2 would cost most of their time
        uid = self.conn.execute("INSERT INTO account (email, name, role, password_hash)"
                                " VALUES (%s, %s, %s, '!') RETURNING id",
                                (f"{name}@example.org", name, role)).fetchone()["id"]
        for k, v in flags.items():
            self.conn.execute(f"UPDATE account SET {k} = %s WHERE id = %s", (v, uid))
        return uid

    def plan(self, lid, start, imported_at="2026-11-20T10:00:00+00:00"):
        self.conn.execute("INSERT INTO g_plan VALUES (%s, %s, %s)", (lid, PLAN, start))
        self.conn.execute(
            "INSERT INTO learner_row (learner_id, entity, key, version, device, change_id, deleted, row)"
            " VALUES (%s, 'plan', '1', 1, 'd', %s, false, %s)",
            (lid, secrets.token_hex(16), json.dumps({"source_text": PLAN, "source_name": "t",
                                                     "imported_at": imported_at, "start_date": start})))

    def time(self, lid, day, seconds, item="w1.something"):
        self.conn.execute("INSERT INTO g_time_entry VALUES (%s, %s, %s, %s, %s, %s, 'cli')",
                          (lid, secrets.token_hex(16), item, day, seconds, f"note {day}"))
        self.conn.execute("INSERT INTO g_day_total VALUES (%s, %s, %s) ON CONFLICT (learner_id, day)"
                          " DO UPDATE SET seconds = g_day_total.seconds + EXCLUDED.seconds", (lid, day, seconds))
        self.conn.execute("INSERT INTO g_activity VALUES (%s, now(), %s) ON CONFLICT (learner_id) DO UPDATE"
                          " SET last_day = greatest(g_activity.last_day, EXCLUDED.last_day)", (lid, day))

    def run(self, lid, lab, kind, passed, criteria=(), metrics=None, at="2026-11-25T10:00:00"):
        self.conn.execute("INSERT INTO g_lab_run VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                          (lid, secrets.token_hex(16), lab, kind, at, passed, json.dumps(list(criteria)),
                           json.dumps(metrics or {})))

    def login(self, client, lid):
        value = sessions.start(self.conn, lid)  # what the login page does
        self.conn.commit()
        client.set_cookie(sessions.SESSION_COOKIE, value)
        return client


@pytest.fixture
def group(pg_url, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_NOW", NOW)
    app = _fresh_app(pg_url)
    with db.connect(pg_url) as conn:
        G = Group(conn)
        ids = {
            "ann": G.person("ann", on_board=True),
            "bob": G.person("bob", share_notes=True),
            "cat": G.person("cat"),
            "meg": G.person("meg", role="mentor"),
            "adm": G.person("adm", role="admin"),
        }
        a, b = ids["ann"], ids["bob"]
        G.plan(a, "2026-11-23")
        G.plan(b, "2026-11-25")  # a Wednesday: counts from its Monday, as the local tool does
        for day, s in (("2026-11-24", 7200), ("2026-11-28", 3600), ("2026-11-28", 12600), ("2026-12-01", 3600)):
            G.time(a, day, s)
        G.time(b, "2026-11-20", 3600)  # before bob's plan: outside its weeks
        G.time(b, "2026-11-28", 1800)
        conn.execute("INSERT INTO g_note VALUES (%s, 'w1.build', 'ann private thought', 'x'),"
                     " (%s, 'w1.build', 'bob shared thought', 'x')", (a, b))
        conn.execute("INSERT INTO g_item_state VALUES (%s, 'w1.something', 'done', 'x')", (a,))
        mask_fail = {"name": "causal mask", "passed": False, "detail": "future token leaked"}
        G.run(a, "transformer", "check", False, [mask_fail, {"name": "shapes", "passed": True}])
        G.run(a, "transformer", "check", True, [{"name": "causal mask", "passed": True}], at="2026-11-26T10:00:00")
        G.run(b, "transformer", "check", False, [mask_fail])
        G.run(b, "block_pool", "check", False, [{"name": "free blocks return", "passed": False}])
        G.run(a, "transformer", "run", True, metrics={"val_loss": 1.52, "train_seconds": 30.0, "preset": "cpu"})
        G.run(a, "transformer", "run", True, metrics={"val_loss": 1.4712, "train_seconds": 41.5, "preset": "gpu",
                                                      "device": "cuda"})
        G.run(a, "vllm", "compare", True, metrics={"engine_output_tok_s": [100.5, 250.25],
                                                   "vllm_output_tok_s": [300.0, 900.0], "speedup_at_max": 3.2})
        G.run(b, "transformer", "run", True, metrics={"val_loss": 1.30, "train_seconds": 10.0})
        conn.commit()
        yield app, G, ids


def _get(app, G, who, path, expect=200):
    client = G.login(app.test_client(), who)
    resp = client.get(path)
    assert resp.status_code == expect, (path, resp.status_code, resp.get_data(as_text=True)[:300])
    return resp.get_data(as_text=True)


def _row(html, table_id, attr, value) -> str:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S).group(0)
    m = re.search(rf'<tr[^>]*{attr}="{value}"[^>]*>(.*?)</tr>', table, re.S)
    return m.group(1) if m else ""


def _cells(row_html) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row_html, re.S)]


def test_cohort_shows_hours_per_plan_week_against_the_budget(group):
    app, G, ids = group
    html = _get(app, G, ids["meg"], "/group/")
    ann = _cells(_row(html, "learners", "data-learner", ids["ann"]))
    # 2h + 1h + 3.5h in week 1 (Nov 23-29) of a 6h budget, 1h in week 2 (3h), now week 2
    assert ann[2] == "W2" and ann[3] == "6.5 / 6" and ann[4] == "1.0 / 3"
    bob = _cells(_row(html, "learners", "data-learner", ids["bob"]))
    assert bob[3] == "0.5 / 6" and bob[4] == "0.0 / 3"  # Nov 20 is before his week 1
    assert "no plan synced" in _row(html, "learners", "data-learner", ids["cat"])
    assert "meg" not in re.search(r'id="learners".*?</table>', html, re.S).group(0)  # staff are not learners
    assert "<svg" in html and "ann, week 1 (Nov 23): 6.5h logged of 6h" in html


def test_a_learner_sees_the_summary_and_only_their_own_row(group):
    app, G, ids = group
    html = _get(app, G, ids["ann"], "/group/")
    assert _row(html, "learners", "data-learner", ids["ann"])
    assert not _row(html, "learners", "data-learner", ids["bob"]) and "bob" not in html
    assert "3 learners" in html  # the summary counts everyone
    _get(app, G, ids["ann"], f"/group/learner/{ids['bob']}", expect=404)
    _get(app, G, ids["ann"], "/group/inactive", expect=403)
    _get(app, G, ids["ann"], f"/group/learner/{ids['meg']}", expect=404)  # not a learner page


def test_inactive_lists_who_logged_nothing_for_n_days(group):
    app, G, ids = group
    # today is Dec 2; ann last logged Dec 1, bob Nov 28, cat never
    for days, quiet in ((None, {"bob", "cat"}), (3, {"bob", "cat"}), (2, {"bob", "cat"}),
                        (1, {"ann", "bob", "cat"}), (5, {"cat"}), (30, {"cat"})):
        html = _get(app, G, ids["meg"], "/group/inactive" + (f"?days={days}" if days else ""))
        listed = {name for name in ("ann", "bob", "cat") if _row(html, "inactive", "data-learner", ids[name])}
        assert listed == quiet, days
    html = _get(app, G, ids["adm"], "/group/inactive?days=3")
    assert _cells(_row(html, "inactive", "data-learner", ids["bob"]))[1:3] == ["2026-11-28", "4 days"]


def test_bad_query_parameters_are_a_400_with_one_line(group):
    app, G, ids = group
    for query in ("days=abc", "days=0", "days=-2", "days=1.5", "days=", "days=99999", "days=%C3%A9",
                  "days=%EF%BC%93", "color=red"):
        text = _get(app, G, ids["meg"], f"/group/inactive?{query}", expect=400)
        assert "Traceback" not in text
        assert ("days must be a whole number" in text) or ("unknown query parameter" in text), query


def test_unknown_parameters_on_other_pages_are_a_400(group):
    app, G, ids = group
    for path in ("/group/?x=1", "/group/labs?x=1", "/group/board?x=1", f"/group/learner/{ids['ann']}?x=1"):
        _get(app, G, ids["adm"], path, expect=400)


def test_lab_pass_rates_and_the_criteria_that_fail_most(group):
    app, G, ids = group
    html = _get(app, G, ids["ann"], "/group/labs")
    t = _cells(_row(html, "rates", "data-lab", "transformer"))
    assert t[1] == "1 of 2 (50%)" and t[3] == "1 of 3"
    assert _cells(_row(html, "rates", "data-lab", "block_pool"))[1] == "0 of 1 (0%)"
    failing = re.search(r'id="failing".*?</table>', html, re.S).group(0)
    rows = [c for c in (_cells(r) for r in re.findall(r"<tr>(.*?)</tr>", failing, re.S)) if c]
    assert rows[0] == ["transformer", "causal mask", "2", "2"]
    assert rows[1] == ["block_pool", "free blocks return", "1", "1"]
    assert not any(r[1] == "shapes" for r in rows)  # it passed


def test_board_shows_only_learners_on_it_with_their_best_metrics(group):
    app, G, ids = group
    html = _get(app, G, ids["cat"], "/group/board")
    ann = _cells(_row(html, "board", "data-learner", ids["ann"]))
    assert ann[:3] == ["ann", "1.4712", "41.5"] and ann[4:] == ["250.2", "900.0", "3.20x"]
    assert not _row(html, "board", "data-learner", ids["bob"])  # a better loss, but not opted in


def test_learner_page_and_who_sees_notes(group):
    app, G, ids = group
    own = _get(app, G, ids["ann"], f"/group/learner/{ids['ann']}")
    assert "ann private thought" in own and 'id="hours-total">7.5h' in own
    assert _cells(_row(own, "weeks", "data-week", 1))[2] == "6.5"
    assert "passed" in _row(own, "labs", "data-lab", "transformer")
    assert "Something" in own and "note 2026-12-01" in own  # recent entries, with the plan's titles
    mentor_on_ann = _get(app, G, ids["meg"], f"/group/learner/{ids['ann']}")
    assert "ann private thought" not in mentor_on_ann and "has not shared them" in mentor_on_ann
    mentor_on_bob = _get(app, G, ids["meg"], f"/group/learner/{ids['bob']}")
    assert "bob shared thought" in mentor_on_bob
    assert "causal mask" in _row(mentor_on_bob, "labs", "data-lab", "transformer")
    _get(app, G, ids["adm"], "/group/learner/999999", expect=404)


def test_a_page_changes_as_soon_as_a_sync_or_an_account_changes(group):
    app, G, ids = group
    cells = lambda html: _cells(_row(html, "learners", "data-learner", ids["ann"]))
    page = f"/group/learner/{ids['ann']}"
    assert cells(_get(app, G, ids["meg"], "/group/"))[4] == "1.0 / 3"
    assert 'id="hours-total">7.5h' in _get(app, G, ids["meg"], page)
    G.time(ids["ann"], "2026-12-02", 5400)  # what a push writes, g_activity included
    G.conn.commit()
    assert cells(_get(app, G, ids["meg"], "/group/"))[4] == "2.5 / 3"
    assert 'id="hours-total">9.0h' in _get(app, G, ids["meg"], page)
    G.conn.execute("UPDATE account SET on_board = false WHERE id = %s", (ids["ann"],))
    G.conn.commit()
    assert not _row(_get(app, G, ids["meg"], "/group/board"), "board", "data-learner", ids["ann"])


def test_names_are_escaped(group):
    app, G, ids = group
    G.conn.execute("UPDATE account SET name = %s WHERE id = %s", ("<script>x</script>", ids["ann"]))
    G.conn.commit()
    html = _get(app, G, ids["meg"], "/group/")
    assert "<script>x" not in html and "&lt;script&gt;x" in html


def test_pages_need_a_login(group):
    app, G, ids = group
    for path in ("/group/", "/group/labs", "/group/board", "/group/inactive", f"/group/learner/{ids['ann']}"):
        assert app.test_client().get(path).status_code in (302, 401)
