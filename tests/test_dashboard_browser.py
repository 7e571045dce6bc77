"""The dashboard in a real browser: Debian's chromium driven by Playwright (no downloaded
browser). Ticks an item, logs 30 minutes, runs a timer, writes a note with <script>, reviews a
concept card, imports a bad plan, then checks that `z2v status --json` and `z2v history --json` agree.
Then the engine trace page: runs a trace with a pool small enough to preempt, from its form, and
checks the drawing is on screen and the step links walk through it.

Needs `apt-get install -y chromium` (scripts/test.sh does it when run as root) and the
`playwright` Python package (the test extra). Screenshots of every page go to
artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_cache import smollm2_dir, tiny_model_dir  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("Z2V_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (apt-get install -y chromium); "
                              "the dashboard's browser test needs it"),
]


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "zero2vllm", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def server(home):
    yield from dashboard_process()


@pytest.fixture
def trace_server(home, tiny_model_dir, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ZERO2VLLM_TRACE_MODEL", str(tiny_model_dir))  # the Run form's model: fast
    yield from dashboard_process()


def dashboard_process():
    proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "serve", "dashboard", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not m:
        proc.kill()
        pytest.fail(f"the dashboard did not start: {line}{proc.stdout.read()}")
    yield m.group(1)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def page():
    try:
        from playwright import sync_api
    except ImportError:  # chromium is here, so the test must run: say what is missing
        pytest.fail("the browser test needs the playwright package: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(15_000)
        pg.problems = []  # console errors and page errors (a CSP violation would show here)
        # expected refusals (the 403 and 422 below) show as "Failed to load resource"; anything
        # else, such as a script blocked by the Content-Security-Policy, is a problem
        pg.on("console", lambda msg: msg.type == "error" and not msg.text.startswith("Failed to load resource")
              and pg.problems.append(msg.text))
        pg.on("pageerror", lambda exc: pg.problems.append(str(exc)))
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def item(page, item_id: str):
    return page.locator(f'li[data-item="{item_id}"]')


def test_browser_flow_agrees_with_the_cli(server, page):
    page.goto(server + "/")
    assert page.locator("#burnup svg").count() == 1 and page.locator("#calendar svg").count() == 1
    shot(page, "overview")

    page.goto(server + "/week/1")
    page.evaluate("window.__same_page = 1")  # survives only if the changes below swap in place

    # tick an item: one click, done
    item(page, "w1.illustrated-transformer").get_by_role("button", name="mark w1.illustrated-transformer done").click()
    page.wait_for_selector('li[data-item="w1.illustrated-transformer"][data-status="done"]')

    # log 30 minutes
    row = item(page, "w1.lets-build-gpt-scratch")
    row.get_by_label("duration to log on w1.lets-build-gpt-scratch").fill("30m")
    row.get_by_role("button", name="log time on w1.lets-build-gpt-scratch").click()
    page.get_by_text("Logged 30m on w1.lets-build-gpt-scratch").wait_for()

    # a bad duration far down the page: the error shows by its box, on screen, what was typed kept
    last = page.locator("li[data-item]").last
    last_id = last.get_attribute("data-item")
    last.get_by_label(f"duration to log on {last_id}").fill("0.4s")
    last.get_by_role("button", name=f"log time on {last_id}").click()
    alert = item(page, last_id).get_by_role("alert")
    alert.wait_for()
    assert "under a second" in alert.inner_text()
    assert item(page, last_id).get_by_label(f"duration to log on {last_id}").input_value() == "0.4s"
    viewport = page.viewport_size
    for shown in (alert, item(page, last_id).get_by_label(f"duration to log on {last_id}")):
        box = shown.bounding_box()
        assert box is not None and 0 <= box["y"] <= viewport["height"] - box["height"]  # in view

    # start and stop a timer
    item(page, "w1.q-k-v-matrices").get_by_role("button", name="start timer on w1.q-k-v-matrices").click()
    stop = item(page, "w1.q-k-v-matrices").get_by_role("button", name="stop timer on w1.q-k-v-matrices")
    stop.wait_for()
    page.wait_for_timeout(1500)
    stop.click()
    page.get_by_text("Stopped w1.q-k-v-matrices: logged").wait_for()

    # a note with <script> is shown as text and never runs
    note_row = item(page, "w1.write-1-page-summary-own")
    note_row.locator("summary").click()
    note_row.get_by_label("note on w1.write-1-page-summary-own").fill(
        "**Attention** is a weighted average <script>window.__xss = 1</script>")
    note_row.get_by_role("button", name="Save note").click()
    page.get_by_text("Saved note on w1.write-1-page-summary-own").wait_for()
    body = item(page, "w1.write-1-page-summary-own").locator(".note-body")
    assert "<script>window.__xss = 1</script>" in body.inner_text()
    assert body.locator("strong").inner_text() == "Attention"
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("window.__same_page") == 1 and page.url.endswith("/week/1")
    # the header's undo button follows the changes (sent out of band with each one)
    assert "note on w1.write-1-page-summary-own" in page.locator("#undo button").inner_text()
    shot(page, "week")

    # a POST without the CSRF token is refused
    assert page.evaluate("fetch('/item/w1.q-k-v-matrices/status', {method: 'POST', "
                         "headers: {'Content-Type': 'application/x-www-form-urlencoded'}, "
                         "body: 'status=done'}).then(r => r.status)") == 403

    # an htmx change with a wrong token: refused, said above the list, the list stays
    page.evaluate("""() => {
        document.body.setAttribute('hx-headers', '{"X-CSRF-Token": "stale"}');
        document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'stale');
    }""")
    item(page, "w1.attention-mechanism").get_by_role("button", name="Skip").click()
    page.locator("#htmx-messages").get_by_text("security token is missing or out of date").wait_for()
    assert item(page, "w1.attention-mechanism").get_attribute("data-status") == "todo"
    assert len(page.problems) == 1 and "403" in page.problems[0]  # htmx logs the refusal: expected
    page.problems.clear()
    page.reload()

    # undo from the header button: the note is gone again
    page.locator("#undo button").click()
    page.get_by_text("Undid: note on w1.write-1-page-summary-own").wait_for()
    assert item(page, "w1.write-1-page-summary-own").locator(".note-body").count() == 0
    note_row = item(page, "w1.write-1-page-summary-own")
    note_row.locator("summary").click()
    note_row.get_by_label("note on w1.write-1-page-summary-own").fill("<script>window.__xss = 1</script>")
    note_row.get_by_role("button", name="Save note").click()
    page.get_by_text("Saved note on w1.write-1-page-summary-own").wait_for()

    # a bad plan: the parser's error, with its line, in the page; nothing imported
    page.goto(server + "/plan")
    page.locator("#plan-text").fill("My plan\nRead: a paper before any week\nWEEK 1: Start\n")
    page.get_by_role("button", name="Import").click()
    error = page.locator("#import-error")
    error.wait_for()
    assert "line 2" in error.inner_text() and "before any 'WEEK N:' heading" in error.inner_text()
    shot(page, "plan-import-error")

    # review one concept card: Reveal (htmx), then Good; the next card replaces it in place
    page.goto(server + "/review")
    first = page.locator("#review .flashcard").get_attribute("data-card")
    shot(page, "review")
    page.get_by_role("button", name="Reveal answer").click()
    page.get_by_role("button", name="rate Good").wait_for()
    shot(page, "review-revealed")
    page.get_by_role("button", name="rate Good").click()
    page.get_by_text(f"{first}: Good, next in").wait_for()
    assert page.locator("#review .flashcard").get_attribute("data-card") != first

    page.goto(server + "/labs")
    shot(page, "labs")
    page.goto(server + "/")
    shot(page, "overview-after")
    assert not page.problems, page.problems

    # the CLI sees exactly what the browser did
    status = json.loads(cli("status", "--json").stdout)
    assert status["timer"] is None
    assert status["weeks"][0]["done"] == 1
    week = {i["id"]: i for i in json.loads(cli("week", "1", "--json").stdout)["items"]}
    assert week["w1.illustrated-transformer"]["state"]["status"] == "done"
    assert week["w1.lets-build-gpt-scratch"]["state"]["seconds"] == 1800
    assert week["w1.q-k-v-matrices"]["state"]["seconds"] >= 1
    assert "<script>" in week["w1.write-1-page-summary-own"]["note"]
    history = json.loads(cli("history", "--json").stdout)
    assert any(e["item_id"] == "w1.q-k-v-matrices" and e["source"] == "timer" for e in history)
    assert status["plan"]["source"] == "bundled default plan"  # the bad plan was not imported
    cards = {c["id"]: c for c in json.loads(cli("card", "list", "--json").stdout)}
    assert cards[first]["reviews"] == 1 and cards[first]["state"] == "learning"  # rated Good once
    logged = sum(e["seconds"] for e in history) / 3600
    assert status["hours"]["logged"] == pytest.approx(logged, abs=0.01)


def test_engine_trace_page_runs_and_draws_a_trace(trace_server, page):
    page.goto(trace_server + "/engine/trace")
    page.locator("#empty").wait_for()
    form = page.locator("#run form")
    form.locator("#trace-prompts").fill("one two three four five six seven\nhi")
    for name, value in {"max_tokens": "8", "block_size": "2", "num_kv_blocks": "8"}.items():
        form.locator(f"input[name={name}]").fill(value)  # a pool this small preempts the newer one
    form.get_by_role("button", name="Run and save").click()
    page.wait_for_url(re.compile(r"/engine/trace/trace-"), timeout=60_000)

    timeline, pool = page.locator("svg#timeline"), page.locator("svg#pool")
    for drawing in (timeline, pool):  # drawn on screen, not just present in the HTML
        box = drawing.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 40
    assert timeline.locator("rect").count() > 10 and pool.locator("rect").count() > 10
    titles = timeline.locator("title").all_text_contents()  # SVG: no inner_text
    assert any(": preempted" in t for t in titles), titles[:5]
    assert page.locator("#saved a").count() == 1

    first = page.locator("#step h2").inner_text()
    page.locator("#next-step").click()
    page.wait_for_function(f"document.querySelector('#step h2').innerText !== {json.dumps(first)}")
    assert page.locator("#step h2").inner_text().startswith("Step 2 of ")
    assert page.locator("#step table.btables tbody tr").count() >= 1
    assert page.locator("#prev-step").count() == 1
    shot(page, "engine-trace")
    assert page.problems == []
