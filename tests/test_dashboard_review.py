"""The dashboard's review page (/review) against `z2v review`: the same cards in the same order,
the same FSRS schedule after the same ratings, week gates held, CSRF on the rating POST."""

from __future__ import annotations

import json
import re

import pytest

from web_helpers import token_of

NOW = "2026-12-02T10:30:00"  # a Wednesday in week 2 of a plan starting 2026-11-23
# (fake time, ratings in order): a first session, the next day, and the day week 3 starts
STEPS = [(NOW, [3, 1, 4, 2]), ("2026-12-03T09:00:00", [3, 3, 1]), ("2026-12-07T09:00:00", [3, 4, 3, 2, 3])]


@pytest.fixture
def app(home, monkeypatch, z2v):
    monkeypatch.setenv("ZERO2VLLM_NOW", NOW)
    z2v("plan", "start", "--on", "2026-11-23")
    from zero2vllm.paths import db_path
    from zero2vllm.web import create_app

    return create_app(db_path())


@pytest.fixture
def client(app):
    return app.test_client()


def shown_card(html: str) -> str | None:
    m = re.search(r'data-card="([^"]+)"', html)
    return m.group(1) if m else None


def stored(db) -> tuple[dict, list]:
    """Every card's FSRS state and due time, and every review, from a database file."""
    from zero2vllm.tracker.store import Store

    store = Store.open(db)
    try:
        cards = {c["id"]: (json.loads(c["fsrs"]), c["due"]) for c in store.cards(include_suspended=True)}
        reviews = [(r["card_id"], r["at"], r["rating"]) for r in store.reviews()]
    finally:
        store.close()
    return cards, reviews


def rate_in_page(client, token: str, rating: int) -> str:
    """What a learner does: open the page, reveal (htmx), click a rating (htmx). Returns the card id."""
    card = shown_card(client.get("/review").get_data(as_text=True))
    assert card, "the page shows no due card"
    hx = {"HX-Request": "true", "X-CSRF-Token": token}
    revealed = client.get(f"/review?reveal={card}&shown=0", headers=hx).get_data(as_text=True)
    assert shown_card(revealed) == card and 'name="rating" value="3"' in revealed
    resp = client.post("/review/rate", data={"card": card, "rating": str(rating)}, headers=hx)
    assert resp.status_code == 200 and f"{card}: " in resp.get_data(as_text=True)
    return card


def test_rating_in_the_page_schedules_exactly_like_the_cli(app, client, z2v, home, tmp_path, monkeypatch):
    from zero2vllm.paths import db_path

    token = token_of(client)
    page_ids = []
    for when, ratings in STEPS:
        monkeypatch.setenv("ZERO2VLLM_NOW", when)
        page_ids.append([rate_in_page(client, token, r) for r in ratings])
    page_db = db_path()

    # the same ratings at the same times through `z2v review` on a pipe, in a store of its own
    monkeypatch.setenv("ZERO2VLLM_HOME", str(tmp_path / "cli-home"))
    (tmp_path / "cli-home").mkdir()
    monkeypatch.setenv("ZERO2VLLM_NOW", NOW)
    z2v("plan", "start", "--on", "2026-11-23")
    cli_ids = []
    for when, ratings in STEPS:
        monkeypatch.setenv("ZERO2VLLM_NOW", when)
        out = z2v("review", "--limit", str(len(ratings)), input="".join(f"\n{r}\n" for r in ratings)).output
        cli_ids.append(re.findall(r"^\[\d+ due\] (\S+) \(", out, re.M))
    assert db_path() != page_db

    assert page_ids == cli_ids  # the same card asked at every step
    assert any(c.startswith("w3.") for c in page_ids[2])  # week 3's cards came once week 3 started
    assert not any(c.startswith("w3.") for c in page_ids[0] + page_ids[1])
    page_cards, page_reviews = stored(page_db)
    cli_cards, cli_reviews = stored(db_path())
    assert page_reviews == cli_reviews and len(page_reviews) == 12
    assert page_cards == cli_cards  # FSRS state (stability, difficulty, step) and due, card for card
    again = [c for c, _, r in page_reviews if r == 1]
    assert all(page_cards[c][0]["state"] in (1, 3) for c in again)  # Again: back to (re)learning


def test_post_without_csrf_is_refused_and_the_schedule_stays(client, home):
    from zero2vllm.paths import db_path

    card = shown_card(client.get("/review").get_data(as_text=True))
    before = stored(db_path())
    assert client.post("/review/rate", data={"card": card, "rating": "3"}).status_code == 403
    resp = client.post("/review/rate", data={"card": card, "rating": "3", "csrf_token": "forged"},
                       headers={"HX-Request": "true", "X-CSRF-Token": "forged"})
    assert resp.status_code == 403 and "security token" in resp.get_data(as_text=True)
    assert stored(db_path()) == before and before[1] == []


def test_week_gate_and_a_second_click_change_nothing(client, z2v, home):
    from zero2vllm.paths import db_path

    token = token_of(client)
    html = client.get("/review").get_data(as_text=True)
    cli = z2v.json("card", "list")
    held = [c for c in cli if not c["available"]]
    assert f"{len(held)} held back until their week starts" in html and held
    resp = client.post("/review/rate", data={"card": held[0]["id"], "rating": "3", "csrf_token": token})
    assert resp.status_code == 302
    page = client.get("/review").get_data(as_text=True)
    assert f"belongs to week {held[0]['week']}, which starts on {held[0]['available_from']}" in page
    assert stored(db_path())[1] == []

    card = shown_card(page)
    for _ in range(2):  # a double click: the second one is refused, the card rated once
        resp = client.post("/review/rate", data={"card": card, "rating": "4", "csrf_token": token},
                           headers={"HX-Request": "true"})
    assert "is not due until" in resp.get_data(as_text=True) and "it was rated already" in resp.get_data(as_text=True)
    assert [r[0] for r in stored(db_path())[1]] == [card]
    assert card not in {c["id"] for c in z2v.json("card", "list", "--due")}


def test_counts_on_the_page_and_the_overview_match_the_cli(client, z2v):
    due = z2v.json("card", "list", "--due")
    html = client.get("/review").get_data(as_text=True)
    assert f"<strong>{len(due)}</strong> cards due now" in html
    assert shown_card(html) == due[0]["id"]
    assert "Reveal answer" in html and 'name="rating"' not in html  # the answer waits for Reveal
    assert due[0]["answer"] not in html
    overview = client.get("/").get_data(as_text=True)
    assert f'<a href="/review">{len(due)} cards due</a>' in overview
    assert '<a href="/review" class="">Review</a>' in overview  # the nav link
    week1 = client.get("/review?week=1").get_data(as_text=True)
    assert shown_card(week1).startswith("w1.")
    assert client.get("/review?week=99").status_code == 404


def test_without_fsrs_the_page_says_what_to_install(client, monkeypatch):
    from zero2vllm.web import views_data

    monkeypatch.setattr(views_data, "review_installed", lambda: False)
    resp = client.get("/review")
    assert resp.status_code == 200 and "pip install 'zero2vllm[review]'" in resp.get_data(as_text=True)
    assert "needs fsrs" in client.get("/").get_data(as_text=True)
