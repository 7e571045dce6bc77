"""Concept review: sessions over a pipe, day after day on a fake clock, checked against FSRS itself."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib
from datetime import date, datetime, timedelta, timezone

from zero2vllm.tracker import review
from zero2vllm.tracker import progress
from zero2vllm.tracker.store import Store

START = date(2025, 3, 3)  # a Monday: week 1 of the plan


def open_store(home) -> Store:
    return Store.open(home / "zero2vllm.db")


def at(day: int, hour: int = 9) -> str:
    """Local time on day `day` of the plan (a naive ISO time: ZERO2VLLM_NOW reads it as local)."""
    return (datetime(START.year, START.month, START.day, hour) + timedelta(days=day)).isoformat()


def session(z2v, monkeypatch, day: int, rating: str, n: int = 40, *args: str):
    """One `z2v review` on day `day` at 09:00, answering every card with `rating` (two lines each)."""
    monkeypatch.setenv("ZERO2VLLM_NOW", at(day))
    return z2v("review", *args, input=f"\n{rating}\n" * n)


def replay(card_id: str, reviews: list[dict]):
    """FSRS's own answer for this card's reviews, with the fuzz seeded as zero2vllm documents;
    yields (rating, review time, card after it)."""
    from fsrs import Card, Rating, Scheduler

    scheduler = Scheduler(desired_retention=0.9)
    card = Card(card_id=zlib.crc32(card_id.encode()), due=datetime.fromisoformat(reviews[0]["at"]))
    out = []
    for r in reviews:
        when = datetime.fromisoformat(r["at"]).astimezone(timezone.utc)
        random.seed(f"{card_id}|{when.isoformat()}")
        card, _ = scheduler.review_card(card, Rating(r["rating"]), when)
        out.append((r["rating"], when, card))
    return out


def test_sixty_days_of_sessions_follow_fsrs_and_week_gates(home, z2v, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_NOW", at(0))
    z2v("plan", "start", "--on", START.isoformat())
    again_day = None
    for day in range(60):
        rating = "3"
        if again_day is None and day >= 25:
            # forget everything once, on the first day a card with a long interval is due
            s = open_store(home)
            plan = progress.load_plan(s)
            now = datetime.fromisoformat(at(day)).astimezone()
            due = review.due_cards(s, plan, now)
            s.close()
            if any(c.state == "review" and (c.interval_days or 0) >= 7 for c in due):
                again_day, rating = day, "1"
        out = session(z2v, monkeypatch, day, rating).output
        if day == 6:  # the last day of week 1: week 2's cards are still held back
            assert "w2." not in out
        if day == 7:
            assert "w2.i.memory-bottleneck" in out
    assert again_day is not None

    s = open_store(home)
    plan = progress.load_plan(s)
    starts = review.week_starts(s, plan)
    cards = {c["id"]: c for c in s.cards()}
    reviews = s.reviews()
    assert len(cards) == len(plan.concepts()) == 22
    assert {r["card_id"] for r in reviews} == set(cards)  # by day 49 every week has started

    grew = shrank = 0
    for card_id, row in cards.items():
        mine = [r for r in reviews if r["card_id"] == card_id]
        # the week gate: no review before the card's week starts, and the first on that very day
        first_day = progress.local_day(datetime.fromisoformat(mine[0]["at"]))
        assert first_day == starts[row["week"]], card_id
        steps = replay(card_id, mine)
        # the stored schedule is exactly FSRS's: state, stability, difficulty, due
        from fsrs import Card

        stored = Card.from_json(row["fsrs"])
        expect = steps[-1][2]
        assert (stored.state, stored.step, stored.due) == (expect.state, expect.step, expect.due)
        assert abs(stored.stability - expect.stability) < 1e-9
        assert abs(stored.difficulty - expect.difficulty) < 1e-9
        # each card came up at the first daily session after it fell due, not before
        for (_, t0, c0), (_, t1, _) in zip(steps, steps[1:]):
            assert c0.due <= t1 < c0.due + timedelta(days=1), card_id
        # intervals of the review state: growing on Good, shrinking after Again
        intervals = [(rating, (c.due - t).days) for rating, t, c in steps if c.state.name == "Review"]
        goods = [d for rating, d in intervals if rating == 3]
        for a, b in zip(goods, goods[1:]):
            if b > a:
                grew += 1
        lapse = [i for i, (rating, _, _) in enumerate(steps) if rating == 1]
        if lapse:
            i = lapse[0]
            before = next(((c.due - t).days for _, t, c in reversed(steps[:i]) if c.state.name == "Review"), None)
            after = next(((c.due - t).days for _, t, c in steps[i + 1:] if c.state.name == "Review"), None)
            if before is not None and after is not None:
                assert after < before, (card_id, before, after)
                shrank += 1
        assert all(b >= a for a, b in zip(goods, goods[1:]) if not lapse), (card_id, goods)
    assert grew >= 20
    assert shrank >= 1
    s.close()


def test_review_through_a_real_pipe(home, z2v):
    z2v("plan", "start", "--on", date.today().isoformat())
    proc = subprocess.run([sys.executable, "-m", "zero2vllm", "review"], input="\n3\n\nx\n1\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "3 card(s) due now (3 new)" in proc.stdout
    assert "Q: What is attention computing?" in proc.stdout
    assert "A: similarity between query and keys" in proc.stdout
    assert "'x' is not a rating" in proc.stdout
    assert "Reviewed 2 card(s): 1 Again, 1 Good. 1 still due." in proc.stdout
    assert "Next due in 1 min" in proc.stdout
    s = open_store(home)
    assert [(r["card_id"], r["rating"]) for r in s.reviews()] == [
        ("w1.k.attention-computing", 3), ("w1.k.self-attention", 1)]
    s.close()


def test_own_cards_gates_and_errors(home, z2v, monkeypatch):
    monkeypatch.setenv("ZERO2VLLM_NOW", at(0))
    z2v("plan", "start", "--on", START.isoformat())
    out = z2v("card", "add", "What does a block table map?", "logical to physical KV blocks", "--week", "3").output
    assert "held until week 3 starts on 2025-03-17" in out
    z2v("card", "add", "Why is decode memory-bound?")
    cards = {c["id"]: c for c in z2v.json("card", "list")}
    own = cards["u.does-block-table-map"]
    assert (own["source"], own["week"], own["available"], own["available_from"]) == ("user", 3, False, "2025-03-17")
    assert cards["u.decode-memory-bound"]["available"] is True
    assert z2v("card", "add", "Q?", "--week", "12", expect=2).output.startswith("Error: there is no week 12")
    assert "comes from the plan" in z2v("card", "rm", "w1.k.self-attention", expect=2).output

    due = {c["id"] for c in z2v.json("card", "list", "--due")}
    assert due == {"w1.k.attention-computing", "w1.k.self-attention", "w1.k.whats-kv-cache",
                   "u.decode-memory-bound"}
    s = open_store(home)
    plan = progress.load_plan(s)
    try:
        review.rate(s, "u.does-block-table-map", 3, datetime.fromisoformat(at(0)).astimezone())
        raise AssertionError("a held card was rated")
    except review.ReviewError as exc:
        assert "starts on 2025-03-17" in str(exc)
    s.close()

    monkeypatch.setenv("ZERO2VLLM_NOW", at(14))  # week 3 starts: the own card comes up
    assert "u.does-block-table-map" in {c["id"] for c in z2v.json("card", "list", "--due")}
    session(z2v, monkeypatch, 14, "4", 40, "--week", "3")
    s = open_store(home)
    assert {r["card_id"] for r in s.reviews()} == {"u.does-block-table-map", "w3.k.continuous-batching",
                                                   "w3.k.does-pagedattention-waste-less",
                                                   "w3.k.does-prefix-caching-share"}
    st = review.stats(s, plan, datetime.fromisoformat(at(14)).astimezone())
    assert st["reviewed_cards"] == 4 and st["mean_retrievability"] > 0.9
    s.close()
    assert "Deleted u.does-block-table-map and its 1 review(s)" in z2v("card", "rm", "u.does-block-table-map").output
