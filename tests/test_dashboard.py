"""The dashboard through Flask's test client: pages, CSRF, escaping, the same data as the CLI,
plan import errors, artifact confinement, error pages; plus the server started for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from datetime import date

import pytest

from web_helpers import csrf_token, token_of

NOW = "2026-12-02T10:30:00"  # a Wednesday in week 2 of a plan starting 2026-11-23


@pytest.fixture
def app(home, monkeypatch, z2v):
    monkeypatch.setenv("ZERO2VLLM_NOW", NOW)
    z2v("plan", "start", "--on", "2026-11-23")  # imports the bundled plan
    from zero2vllm.paths import db_path
    from zero2vllm.web import create_app

    return create_app(db_path())


@pytest.fixture
def client(app):
    return app.test_client()


def status_json(z2v) -> dict:
    return z2v.json("status")


def test_every_page_renders(client):
    for path in ["/", "/week/", "/week/1", "/week/8", "/labs", "/plan", "/plan/export"]:
        resp = client.get(path)
        assert resp.status_code == 200, path
    html = client.get("/").get_data(as_text=True)
    for part in ("Burn-up", "Study days", "Progress per week", "Pace", "Projected finish",
                 "Week 2: LLM Inference", "Today's block", "Current streak"):
        assert part in html, part
    assert client.get("/week/99").status_code == 404


def test_draft_weeks_and_items_are_marked(client):
    html = client.get("/week/5").get_data(as_text=True)
    assert 'class="badge draft"' in html
    html = client.get("/week/1").get_data(as_text=True)
    assert "Key concepts" in html and "What is attention computing?" in html


def test_post_without_csrf_token_is_refused_and_changes_nothing(client, z2v):
    resp = client.post("/item/w1.illustrated-transformer/status", data={"status": "done"})
    assert resp.status_code == 403
    assert "security token" in resp.get_data(as_text=True)
    resp = client.post("/item/w1.illustrated-transformer/log", data={"duration": "30m", "csrf_token": "forged"})
    assert resp.status_code == 403
    week = z2v.json("week", "1")
    state = {i["id"]: i["state"] for i in week["items"]}
    assert state["w1.illustrated-transformer"]["status"] == "todo"
    assert state["w1.illustrated-transformer"]["seconds"] == 0


def test_htmx_tick_log_timer_agree_with_cli(client, z2v, monkeypatch):
    token = token_of(client)
    hx = {"HX-Request": "true", "X-CSRF-Token": token}
    resp = client.post("/item/w1.illustrated-transformer/status", data={"status": "done"}, headers=hx)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert html.lstrip().startswith("<section id=\"checklist\"")  # a partial, swapped in place
    assert 'id="item-w1.illustrated-transformer" data-item="w1.illustrated-transformer" data-status="done"' in html
    resp = client.post("/item/w1.lets-build-gpt-scratch/log", data={"duration": "30m"}, headers=hx)
    assert "Logged 30m on w1.lets-build-gpt-scratch" in resp.get_data(as_text=True)
    client.post("/item/w1.q-k-v-matrices/start", headers=hx)
    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-12-02T10:50:00")
    resp = client.post("/timer/stop", headers=hx)
    assert "Stopped w1.q-k-v-matrices: logged 20m" in resp.get_data(as_text=True)

    st = status_json(z2v)
    week1 = st["weeks"][0]
    assert week1["done"] == 1
    assert st["timer"] is None
    hist = {(e["item_id"], e["seconds"], e["source"]) for e in json.loads(z2v("history", "--json").output)}
    assert ("w1.lets-build-gpt-scratch", 1800, "log") in hist
    assert ("w1.q-k-v-matrices", 1200, "timer") in hist


def test_plain_form_posts_redirect_and_flash(client, z2v):
    token = token_of(client)
    resp = client.post("/item/w1.q-k-v-matrices/status", data={"status": "skipped", "csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/week/1")
    html = client.get("/week/1").get_data(as_text=True)
    assert "w1.q-k-v-matrices: skipped." in html
    assert z2v.json("week", "1")["items"][-3]["state"]["status"] in ("skipped", "todo")
    states = {i["id"]: i["state"]["status"] for i in z2v.json("week", "1")["items"]}
    assert states["w1.q-k-v-matrices"] == "skipped"


def test_bad_input_is_a_message_not_a_crash(client):
    token = token_of(client)
    hx = {"HX-Request": "true", "X-CSRF-Token": token}
    html = client.post("/item/w1.illustrated-transformer/log", data={"duration": "30"}, headers=hx).get_data(as_text=True)
    assert "has no unit; write 30m or 30h" in html
    html = client.post("/item/w1.illustrated-transformer/log", data={"duration": "30h"}, headers=hx).get_data(as_text=True)
    assert "more than a day" in html
    html = client.post("/item/w1.illustrated-transformer/status", data={"status": "nope"}, headers=hx).get_data(as_text=True)
    assert "unknown status" in html
    html = client.post("/timer/stop", headers=hx).get_data(as_text=True)
    assert "no timer is running" in html


def test_script_in_a_note_is_text(client, z2v):
    z2v("note", "w1.illustrated-transformer", "--text", "**bold** <script>alert('x')</script> [a](javascript:alert(1))")
    html = client.get("/week/1").get_data(as_text=True)
    assert "<strong>bold</strong>" in html
    assert "&lt;script&gt;alert(" in html
    assert "<script>alert" not in html
    assert 'href="javascript:' not in html


def test_notes_saved_in_the_page_reach_the_cli(client, z2v):
    token = token_of(client)
    client.post("/item/w1.write-1-page-summary-own/note", headers={"HX-Request": "true", "X-CSRF-Token": token},
                data={"text": "# Summary\r\nattention = weighted average"})
    out = z2v("note", "w1.write-1-page-summary-own", "--show").output
    assert "attention = weighted average" in out and "\r" not in out


def test_cli_changes_show_on_reload_despite_the_page_cache(client, z2v, app):
    first = client.get("/").get_data(as_text=True)
    assert client.get("/").get_data(as_text=True).count("0.5h") == first.count("0.5h")
    renders = app.extensions["z2v_page_cache"].renders
    z2v("log", "w2.kv-cache-transformers", "3h")
    html = client.get("/").get_data(as_text=True)
    assert app.extensions["z2v_page_cache"].renders == renders + 1
    # today's block (Wednesday-Thursday): 3h plus the bundled plan's "watched for 30 min",
    # logged on the day it was imported (today)
    assert "3.5h / 2h" in html and "0.5h / 2h" not in html
    z2v("undo")
    assert "0.5h / 2h" in client.get("/").get_data(as_text=True)


def test_each_session_gets_its_own_token_from_the_cached_page(app):
    a, b = app.test_client(), app.test_client()
    ta, tb = token_of(a, "/"), token_of(b, "/")
    assert ta != tb and "__Z2V_CSRF" not in a.get("/").get_data(as_text=True)
    resp = b.post("/undo", data={"csrf_token": ta})  # a's token in b's session
    assert resp.status_code == 403


def test_import_bad_plan_shows_the_cli_error(client, z2v, tmp_path):
    token = token_of(client, "/plan")
    before = z2v("plan", "export").output
    bad = "Intro line\nWatch: something before any week\nWEEK 1: x\n"
    resp = client.post("/plan/import", data={"text": bad, "csrf_token": token})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    path = tmp_path / "bad.txt"
    path.write_text(bad)
    cli = z2v("plan", "import", str(path), expect=2).output.strip()
    cli_message = cli.split(f"{path}: ", 1)[1]
    from markupsafe import escape

    assert str(escape(cli_message)) in html  # the CLI's words, escaped as the page escapes text
    assert "line 2" in html
    assert z2v("plan", "export").output == before  # nothing imported


def test_import_good_plan_by_upload_and_export(client, z2v):
    import io

    token = token_of(client, "/plan")
    text = ("My plan\nTime commitment: 5 hours/week\nWEEK 1: Basics\nMonday (1 hour):\n"
            "Read: A paper - read for 20 min\nWEEK 2: More\nFriday (2 hours):\nWatch: A talk\n")
    resp = client.post("/plan/import", data={"csrf_token": token, "file": (io.BytesIO(text.encode()), "mine.txt")},
                       content_type="multipart/form-data")
    assert resp.status_code == 302
    html = client.get("/plan").get_data(as_text=True)
    assert "Imported &#39;My plan&#39;: 2 weeks" in html and "mine.txt" in html
    assert z2v.json("status")["plan"]["title"] == "My plan"
    assert client.get("/plan/export").get_data(as_text=True) == z2v("plan", "export").output


def test_artifacts_only_from_inside_the_data_dir(client, home, tmp_path):
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    inside = home / "labs" / "transformer" / "loss.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text("step,loss\n0,4.2\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    link = home / "labs" / "sneaky.txt"
    link.symlink_to(outside)
    store = Store.open(db_path())
    run_id = store.add_lab_run("transformer", True, kind="run", metrics={"steps": [0, 1, 2], "loss": [3.0, 2.0, 1.5]},
                               artifacts=[str(inside), str(outside), str(link)])
    store.close()
    assert client.get(f"/labs/run/{run_id}/artifact/0").get_data(as_text=True).startswith("step,loss")
    assert client.get(f"/labs/run/{run_id}/artifact/1").status_code == 403
    assert client.get(f"/labs/run/{run_id}/artifact/2").status_code == 403
    assert client.get(f"/labs/run/{run_id}/artifact/9").status_code == 404
    html = client.get("/labs").get_data(as_text=True)
    assert "outside the data directory, not served" in html
    assert '<svg class="chart small"' in html  # the loss list drawn against steps


def test_lab_history_with_criteria(client, home):
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    store = Store.open(db_path())
    store.add_lab_run("transformer", False, criteria=[
        {"name": "output shapes", "passed": False, "detail": "expected: (2, 8, 65)\ngot: <(2, 65)>"}])
    store.close()
    html = client.get("/labs").get_data(as_text=True)
    assert "output shapes" in html and "got: &lt;(2, 65)&gt;" in html and "failing" in html


def test_database_error_is_a_page_not_a_traceback(home, monkeypatch):
    from zero2vllm.web import create_app

    bad = home / "broken.db"
    bad.write_bytes(b"this is not a database" * 100)
    resp = create_app(bad).test_client().get("/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 503
    assert "The database cannot be used" in html and "Traceback" not in html


def test_unknown_host_header_is_refused(client):
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200


def test_streaks_and_burnup_numbers(home, monkeypatch):
    from zero2vllm.tracker import progress
    from zero2vllm.web import views_data

    by_day = {"2026-11-23": 3600, "2026-11-24": 1800, "2026-11-26": 600, "2026-11-27": 60,
              "2026-11-28": 7200}
    s = views_data.streaks(by_day, date(2026, 11, 29))  # nothing yet today: counts from yesterday
    assert (s["current"], s["longest"], s["days_studied"]) == (3, 3, 5)
    assert views_data.streaks(by_day, date(2026, 11, 30))["current"] == 0

    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    monkeypatch.setenv("ZERO2VLLM_NOW", "2026-11-25T12:00:00")
    store = Store.open(db_path())
    plan = progress.load_plan(store)
    store.set_start_date("2026-11-23")
    store.log_time("w1.illustrated-transformer", "2026-11-20", 3600, "before the start")
    store.log_time("w1.illustrated-transformer", "2026-11-24", 1800, "log")
    b = views_data.burnup(store, plan, date(2026, 11, 25))
    assert b["days"][0] == date(2026, 11, 23) and len(b["done"]) == 3
    imported = 0.5  # the bundled plan's "watched for 30 min", logged on the import day
    assert b["done"][-1] == pytest.approx(1.5 + imported, abs=0.01)
    assert b["planned"][1] == pytest.approx(2.0)  # Monday-Tuesday (2 hours): 1h a day
    assert b["planned"][-1] == pytest.approx(sum(progress.planned_hours_by_day(plan, date(2026, 11, 23)).values()))
    store.close()


@pytest.mark.slow
def test_serve_dashboard_runs_and_binds_loopback(home, monkeypatch):
    env = dict(os.environ, ZERO2VLLM_NOW=NOW)
    proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "serve", "dashboard", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/", timeout=20) as resp:
            assert resp.status == 200 and b"Burn-up" in resp.read()
        busy = subprocess.run([sys.executable, "-m", "zero2vllm", "serve", "dashboard", "--port", m.group(1)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert busy.returncode == 2 and "cannot listen on 127.0.0.1" in busy.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cached_overview_serves_the_same_page_and_still_shows_messages(app, z2v):
    c = app.test_client()
    first = c.get("/")  # through Flask: starts the session, renders, caches
    second = c.get("/")  # served from the cache before Flask
    assert second.status_code == 200 and second.get_data() == first.get_data()
    assert second.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    token = csrf_token(second.get_data(as_text=True))
    z2v("log", "w2.kv-cache-transformers", "15m")
    resp = c.post("/undo", data={"csrf_token": token, "next": "/"})
    assert resp.status_code == 302
    html = c.get("/").get_data(as_text=True)  # a message is waiting: not from the cache
    assert "Undid: log 15m on w2.kv-cache-transformers" in html
    assert "Undid:" not in c.get("/").get_data(as_text=True)  # shown once


def test_a_stored_plan_that_no_longer_parses_is_a_page_with_the_way_out(client, home):
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    store = Store.open(db_path())
    store.set_plan("no weeks in here\n", "hand-edited")
    store.close()
    resp = client.get("/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 500 and "The stored plan cannot be read" in html and "Traceback" not in html
    assert "no &#39;WEEK N: title&#39; heading" in html
    resp = client.get("/plan")
    assert resp.status_code == 200 and 'id="import"' in resp.get_data(as_text=True)


def test_undo_redirects_only_inside_the_dashboard(client):
    token = token_of(client)
    for evil in ("//evil.example/", "/\\evil.example/", "https://evil.example/"):
        resp = client.post("/undo", data={"csrf_token": token, "next": evil})
        assert resp.status_code == 302 and resp.headers["Location"] == "/", evil
    resp = client.post("/undo", data={"csrf_token": token, "next": "/week/2"})
    assert resp.headers["Location"] == "/week/2"


def test_htmx_is_vendored_and_served(client):
    resp = client.get("/static/htmx.min.js")
    assert resp.status_code == 200 and b'version:"2.0.11"' in resp.get_data()
    html = client.get("/").get_data(as_text=True)
    assert re.findall(r'<script src="([^"]+)"', html) == ["/static/htmx.min.js"]  # nothing from a CDN
