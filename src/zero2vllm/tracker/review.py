"""Concept review: the plan's key concepts and insights, and the learner's own cards, as flashcards
scheduled with FSRS (the `fsrs` package, v6).

Cards:
- Every "Key concepts to internalize" line is a card: the question before the parentheses on the
  front, the text inside them on the back. Every "Key insights" line is a card too, asked as
  "<statement> - why?". Plan cards keep the concept's id (w1.k.what-attention-computing).
- `z2v card add` makes user cards (ids u.<words>), optionally tied to a week.
- A card of week N is held back until week N starts (progress.start_date / week_dates), then it
  is due at once. Concepts that leave the plan keep their reviews but are suspended.

Scheduling is FSRS with its default parameters and desired retention 0.9: ratings Again, Hard,
Good, Easy (1-4); new cards go through the learning steps (1 min, 10 min), lapsed ones through a
relearning step (10 min). FSRS "fuzzes" intervals of 3 days and more by a few percent so cards
made together don't stay together; we seed that randomness with the card id and review time, so
the same reviews always give the same schedule (and tests can check it). All times handed to
FSRS are UTC-aware.

Library functions for the CLI and the dashboard: `sync_cards`, `all_cards`, `due_cards`,
`rate`, `add_card`, `stats`. They take `now` (an aware datetime) so the caller's clock decides,
which is how tests run day after day with ZERO2VLLM_NOW.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from zero2vllm.tracker import progress
from zero2vllm.tracker.plan import Concept, Plan, slug
from zero2vllm.tracker.store import Store, iso

RATINGS = {1: "Again", 2: "Hard", 3: "Good", 4: "Easy"}
RATING_WORDS = {"again": 1, "a": 1, "hard": 2, "h": 2, "good": 3, "g": 3, "easy": 4, "e": 4}
DESIRED_RETENTION = 0.9
STATE_NAMES = {1: "learning", 2: "review", 3: "relearning"}


class ReviewError(ValueError):
    """A card that does not exist, is not available yet, or a rating that is not 1-4."""


@dataclass
class ReviewCard:
    """One card as the CLI and the dashboard show it."""

    id: str
    source: str  # plan | user
    week: int | None
    question: str
    answer: str | None
    due: datetime  # UTC
    state: str  # new | learning | review | relearning
    stability: float | None  # days until retrievability falls to 90%
    difficulty: float | None  # 1 (easy) .. 10 (hard)
    reviews: int
    lapses: int  # times rated Again
    last_review: datetime | None
    retrievability: float | None  # probability of recall now; None for a new card
    available_from: date | None  # the first day of its week; None: no week gate
    available: bool
    suspended: bool

    @property
    def interval_days(self) -> float | None:
        """Days from the last review to the due time (the interval FSRS chose)."""
        if self.last_review is None:
            return None
        return (self.due - self.last_review).total_seconds() / 86400

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        for key in ("due", "last_review"):
            d[key] = d[key].isoformat() if d[key] else None
        d["available_from"] = self.available_from.isoformat() if self.available_from else None
        d["interval_days"] = self.interval_days
        return d


@dataclass
class Rated:
    """What a rating did: the card after it, and the interval until it is due again."""

    card: ReviewCard
    rating: int
    review_id: int
    interval: timedelta


# -- fsrs glue -------------------------------------------------------------------------------------
def _scheduler():
    from fsrs import Scheduler

    return Scheduler(desired_retention=DESIRED_RETENTION)


def utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive: local time
    return dt.astimezone(timezone.utc)


def _new_fsrs_card(card_id: str, due: datetime):
    from fsrs import Card

    # An explicit fsrs id: the default is a timestamp, and fsrs sleeps 1 ms to keep those unique.
    return Card(card_id=zlib.crc32(card_id.encode()), due=utc(due))


def parse_rating(value) -> int:
    """1-4, or again/hard/good/easy (or their first letter)."""
    if isinstance(value, int) and value in RATINGS:
        return value
    text = str(value).strip().lower()
    if text in ("1", "2", "3", "4"):
        return int(text)
    if text in RATING_WORDS:
        return RATING_WORDS[text]
    raise ReviewError(f"rating {value!r} is not one of 1 (Again), 2 (Hard), 3 (Good), 4 (Easy)")


# -- cards from the plan -----------------------------------------------------------------------------
def concept_card_text(concept: Concept) -> tuple[str, str | None]:
    """(front, back) of a plan concept or insight."""
    if concept.kind == "insight":
        return f"{concept.question.rstrip(' .')} - why?", concept.answer
    return concept.question, concept.answer


def week_starts(store: Store, plan: Plan) -> dict[int, date]:
    """The first day of each week, by week number (weeks count in plan order, like the tracker)."""
    start = progress.start_date(store)
    return {w.number: progress.week_dates(start, n)[0] for n, w in enumerate(plan.weeks, start=1)}


def sync_cards(store: Store, plan: Plan, now: datetime) -> int:
    """Make the plan's concepts cards: add new ones, update edited text, suspend those that left
    the plan (their reviews stay) and bring back ones that returned. Returns cards added."""
    existing = {c["id"]: c for c in store.cards()}
    new_rows = []
    in_plan = set()
    for concept in plan.concepts():
        in_plan.add(concept.id)
        front, back = concept_card_text(concept)
        row = existing.get(concept.id)
        if row is None:
            card = _new_fsrs_card(concept.id, now)
            new_rows.append({
                "id": concept.id, "source": "plan", "week": concept.week, "question": front,
                "answer": back, "fsrs": card.to_json(), "due": iso(card.due), "created_at": iso(now),
            })
            continue
        changes = {}
        if (row["question"], row["answer"], row["week"]) != (front, back, concept.week):
            changes.update(question=front, answer=back, week=concept.week)
        if row["suspended"]:
            changes["suspended"] = 0
        if changes:
            store.update_card(concept.id, **changes)
    for card_id, row in existing.items():
        if row["source"] == "plan" and card_id not in in_plan and not row["suspended"]:
            store.update_card(card_id, suspended=1)
    if new_rows:
        store.add_cards(new_rows)
    return len(new_rows)


def add_card(store: Store, plan: Plan, question: str, answer: str | None, week: int | None,
             now: datetime) -> ReviewCard:
    """A learner's own card; `week` gates it like the plan's (None: available now)."""
    question = question.strip()
    if not question:
        raise ReviewError("the question is empty; write what the front of the card asks")
    if week is not None and plan.week(week) is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise ReviewError(f"there is no week {week}; the plan has weeks {have}")
    taken = {c["id"] for c in store.cards()}
    base = f"u.{slug(question)}"
    card_id, n = base, 2
    while card_id in taken:
        card_id, n = f"{base}-{n}", n + 1
    card = _new_fsrs_card(card_id, now)
    store.add_cards([{
        "id": card_id, "source": "user", "week": week, "question": question,
        "answer": (answer or "").strip() or None, "fsrs": card.to_json(), "due": iso(card.due),
        "created_at": iso(now),
    }])
    return _view(store.card(card_id), week_starts(store, plan), {}, now, _scheduler())


# -- reading cards -----------------------------------------------------------------------------------
def _review_counts(store: Store) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for r in store.reviews():
        c = counts.setdefault(r["card_id"], [0, 0])
        c[0] += 1
        c[1] += r["rating"] == 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def _view(row: dict, starts: dict[int, date], counts: dict, now: datetime, scheduler) -> ReviewCard:
    from fsrs import Card

    card = Card.from_json(row["fsrs"])
    new = card.last_review is None
    state = "new" if new else STATE_NAMES[int(card.state)]
    gate = None
    if row["week"] is not None:
        gate = starts.get(row["week"])
    today = progress.local_day(now)
    n, lapses = counts.get(row["id"], (0, 0))
    return ReviewCard(
        id=row["id"], source=row["source"], week=row["week"], question=row["question"],
        answer=row["answer"], due=utc(card.due), state=state, stability=card.stability,
        difficulty=card.difficulty, reviews=n, lapses=lapses, last_review=card.last_review,
        retrievability=None if new else scheduler.get_card_retrievability(card, utc(now)),
        available_from=gate, available=gate is None or today >= gate,
        suspended=bool(row["suspended"]),
    )


def all_cards(store: Store, plan: Plan, now: datetime, *, week: int | None = None,
              include_suspended: bool = False) -> list[ReviewCard]:
    """Every card (synced with the plan first), soonest due first."""
    sync_cards(store, plan, now)
    starts, counts, scheduler = week_starts(store, plan), _review_counts(store), _scheduler()
    cards = [_view(r, starts, counts, now, scheduler) for r in store.cards(include_suspended=include_suspended)]
    if week is not None:
        cards = [c for c in cards if c.week == week]
    held = lambda c: (not c.available, c.available_from if not c.available else date.min)  # noqa: E731
    return sorted(cards, key=lambda c: (*held(c), c.due, c.week or 0, c.id))


def due_cards(store: Store, plan: Plan, now: datetime, *, week: int | None = None) -> list[ReviewCard]:
    """Cards to review now: available (their week has started), not suspended, due by `now`."""
    at = utc(now)
    return [c for c in all_cards(store, plan, now, week=week) if c.available and c.due <= at]


def rate(store: Store, card_id: str, rating, now: datetime, *, duration_ms: int | None = None,
         plan: Plan | None = None) -> Rated:
    """Rate a card (1 Again, 2 Hard, 3 Good, 4 Easy) at `now`: FSRS gives its next due time."""
    import random

    from fsrs import Card, Rating

    value = parse_rating(rating)
    plan = plan or progress.load_plan(store)
    at = utc(now)
    scheduler = _scheduler()
    with store.transaction():  # read and write the card as one step against other processes
        row = store.card(card_id)
        if row is None:
            raise ReviewError(f"no card {card_id!r}; `z2v card list` shows the ids")
        starts = week_starts(store, plan)
        gate = starts.get(row["week"]) if row["week"] is not None else None
        if gate is not None and progress.local_day(now) < gate:
            raise ReviewError(f"card {card_id} belongs to week {row['week']}, which starts on {gate}")
        card = Card.from_json(row["fsrs"])
        saved = random.getstate()  # fsrs fuzzes with the global random: seed it, then restore it
        random.seed(f"{card_id}|{at.isoformat()}")
        try:
            new_card, log = scheduler.review_card(card, Rating(value), at, duration_ms)
        finally:
            random.setstate(saved)
        review_id = store.record_review(card_id, iso(at), value, json.dumps(log.to_dict()),
                                        new_card.to_json(), iso(new_card.due))
        view = _view(store.card(card_id), starts, _review_counts(store), now, scheduler)
    return Rated(card=view, rating=value, review_id=review_id, interval=utc(new_card.due) - at)


# -- numbers ---------------------------------------------------------------------------------------
def stats(store: Store, plan: Plan, now: datetime, *, week: int | None = None) -> dict:
    """Counts for the review screen and the report: due now, new, held back by the week gate,
    next due times, reviews today, mean retrievability of reviewed cards."""
    cards = all_cards(store, plan, now, week=week)
    at = utc(now)
    available = [c for c in cards if c.available]
    held = [c for c in cards if not c.available]
    due = [c for c in available if c.due <= at]
    upcoming = sorted((c for c in available if c.due > at), key=lambda c: c.due)
    reviewed = [c for c in available if c.retrievability is not None]
    today = progress.local_day(now)
    reviews_today = [r for r in store.reviews(since=iso(at - timedelta(days=2)))
                     if progress.local_day(datetime.fromisoformat(r["at"])) == today]
    next_gate = min((c.available_from for c in held), default=None)
    return {
        "cards": len(cards),
        "available": len(available),
        "due": len(due),
        "due_new": sum(c.state == "new" for c in due),
        "held": len(held),
        "held_until": next_gate.isoformat() if next_gate else None,
        "held_count_next": sum(c.available_from == next_gate for c in held) if next_gate else 0,
        "next_due": upcoming[0].due.isoformat() if upcoming else None,
        "due_within_day": sum(c.due <= at + timedelta(days=1) for c in upcoming),
        "due_within_week": sum(c.due <= at + timedelta(days=7) for c in upcoming),
        "reviewed_cards": len(reviewed),
        "mean_retrievability": (sum(c.retrievability for c in reviewed) / len(reviewed)) if reviewed else None,
        "reviews_today": len(reviews_today),
        "by_state": {s: sum(c.state == s for c in available) for s in ("new", "learning", "review", "relearning")},
    }


def forecast(cards: list[ReviewCard], now: datetime, days: int = 14) -> list[tuple[date, int]]:
    """How many available cards fall due on each of the next `days` local days (overdue: today)."""
    today = progress.local_day(now)
    counts = {today + timedelta(days=i): 0 for i in range(days)}
    for c in cards:
        if c.suspended:
            continue
        day = max(progress.local_day(c.due), today)
        if c.available_from and c.available_from > day:
            day = c.available_from
        if day in counts:
            counts[day] += 1
    return sorted(counts.items())


def human_delta(delta: timedelta) -> str:
    """'in 10 min', 'in 3 h', 'in 4 days'."""
    s = delta.total_seconds()
    if s <= 0:
        return "now"
    if s < 3570:
        return f"in {max(1, round(s / 60))} min"
    if s < 86400:
        return f"in {s / 3600:.1f} h".replace(".0 h", " h")
    d = s / 86400
    return f"in {d:.0f} day{'s' if round(d) != 1 else ''}"

