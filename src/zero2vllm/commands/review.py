"""`z2v review` (an FSRS review session) and `z2v card add|list|rm`: concept flashcards."""

from __future__ import annotations

import sys
import time

import click

from zero2vllm.commands._app import AppContext, Z2VError, pass_app

KEYS_HELP = "1 Again  2 Hard  3 Good  4 Easy  (q quits)"


def _plan(app: AppContext):
    from zero2vllm.tracker import progress
    from zero2vllm.tracker.plan import PlanError

    try:
        return progress.load_plan(app.store)
    except PlanError as exc:
        raise Z2VError(f"the stored plan cannot be read: {exc}; import a fixed one with `z2v plan import`")


def _local(dt) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M")


def _next_line(stats: dict, now) -> str:
    """'Next: 2 due in 10 min (2024-03-05 14:32); 3 more held until week ...'."""
    from datetime import datetime

    from zero2vllm.tracker.review import human_delta, utc

    parts = []
    if stats["next_due"]:
        nxt = datetime.fromisoformat(stats["next_due"])
        parts.append(f"next due {human_delta(nxt - utc(now))} ({_local(nxt)}); "
                     f"{stats['due_within_day']} within a day, {stats['due_within_week']} within a week")
    if stats["held"]:
        parts.append(f"{stats['held']} held until their week starts "
                     f"({stats['held_count_next']} on {stats['held_until']})")
    return "; ".join(parts) if parts else "no cards yet"


# -- z2v card ---------------------------------------------------------------------------------------
@click.group("card")
def card_group() -> None:
    """Flashcards: the plan's key concepts and insights, plus your own (`z2v review` reviews them)."""


@card_group.command("add")
@click.argument("question")
@click.argument("answer", required=False)
@click.option("--week", type=int, default=None, help="Hold the card back until this plan week starts.")
@pass_app
def card_add(app: AppContext, question: str, answer: str | None, week: int | None) -> None:
    """Add your own card: QUESTION on the front, ANSWER on the back."""
    from zero2vllm.tracker import review
    from zero2vllm.tracker import progress

    plan = _plan(app)
    try:
        card = review.add_card(app.store, plan, question, answer, week, progress.now())
    except review.ReviewError as exc:
        raise Z2VError(str(exc)) from None
    when = "due now" if card.available else f"held until week {week} starts on {card.available_from}"
    click.echo(f"Added card {card.id} ({when}).")


@card_group.command("list")
@click.option("--week", type=int, default=None, help="Only this week's cards.")
@click.option("--due", "due_only", is_flag=True, help="Only cards due now.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def card_list(app: AppContext, week: int | None, due_only: bool, as_json: bool) -> None:
    """Every card with its state, due time and retrievability (chance you recall it now)."""
    from zero2vllm import ui
    from zero2vllm.tracker import review
    from zero2vllm.tracker import progress

    plan = _plan(app)
    now = progress.now()
    cards = review.due_cards(app.store, plan, now, week=week) if due_only else \
        review.all_cards(app.store, plan, now, week=week)
    if as_json:
        ui.echo_json([c.to_dict() for c in cards])
        return
    if not cards:
        click.echo("No cards." if not due_only else "Nothing due now.")
        return
    at = review.utc(now)
    for c in cards:
        if not c.available:
            when = f"from {c.available_from}"
        elif c.due <= at:
            when = "due now"
        else:
            when = f"due {review.human_delta(c.due - at)}"
        recall = f"R {c.retrievability:.0%}" if c.retrievability is not None else "new"
        wk = f"w{c.week}" if c.week is not None else "--"
        click.echo(f"{c.id:<40} {wk:<3} {c.state:<10} {when:<18} {recall:<6} {c.question}")
    st = review.stats(app.store, plan, now)
    click.echo(f"\n{st['due']} due now; " + _next_line(st, now))


@card_group.command("rm")
@click.argument("card_id")
@pass_app
def card_rm(app: AppContext, card_id: str) -> None:
    """Delete one of your own cards and its reviews (plan cards follow the plan)."""
    row = app.store.card(card_id)
    if row is None:
        raise Z2VError(f"no card {card_id!r}; `z2v card list` shows the ids")
    if row["source"] != "user":
        raise Z2VError(f"{card_id} comes from the plan; edit the plan's key concepts to change it")
    n = app.store.delete_card(card_id)
    click.echo(f"Deleted {card_id} and its {n} review(s).")


# -- z2v review -------------------------------------------------------------------------------------
class _Input:
    """Keys on a terminal (one key, no Enter); lines on a pipe, so tests can drive a session."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty()

    def wait(self) -> bool:
        """Wait for Enter (reveal). False: the user quit or the input ended."""
        if self.tty:
            click.echo("  [Enter] reveal  [q] quit ", nl=False)
            key = click.getchar()
            click.echo()
            return key.lower() != "q"
        line = sys.stdin.readline()
        return bool(line) and line.strip().lower() != "q"

    def rating(self) -> int | None:
        from zero2vllm.tracker.review import ReviewError, parse_rating

        while True:
            if self.tty:
                click.echo(f"  {KEYS_HELP}: ", nl=False)
                key = click.getchar()
                click.echo(key)
            else:
                key = sys.stdin.readline()
                if not key:
                    return None
            if key.strip().lower() == "q":
                return None
            try:
                return parse_rating(key)
            except ReviewError:
                click.echo(f"  {key.strip()!r} is not a rating; press {KEYS_HELP}")


@click.command("review")
@click.option("--week", type=int, default=None, help="Only this week's cards.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many cards.")
@pass_app
def review_cmd(app: AppContext, week: int | None, limit: int | None) -> None:
    """Review the cards due now: read the question, recall, reveal, rate 1-4.

    Ratings: 1 Again (forgot), 2 Hard, 3 Good, 4 Easy. FSRS sets the next due time from them.
    On a pipe, each card reads two lines: anything (reveal) and the rating.
    """
    from zero2vllm.tracker import review
    from zero2vllm.tracker import progress

    plan = _plan(app)
    store = app.store
    st = review.stats(store, plan, progress.now(), week=week)
    click.echo(f"{st['due']} card(s) due now ({st['due_new']} new); {st['available']} available, "
               f"{st['held']} held back until their week starts.")
    inp = _Input()
    done, counts, seen = 0, {k: 0 for k in review.RATINGS}, set()
    while limit is None or done < limit:
        now = progress.now()
        due = review.due_cards(store, plan, now, week=week)
        # A card rated Again comes back within the session once its step is over, but a card
        # already seen waits while unseen ones remain.
        due.sort(key=lambda c: (c.id in seen, c.due))
        if not due:
            break
        card = due[0]
        wk = f"week {card.week}" if card.week is not None else "your card"
        click.echo(f"\n[{len(due)} due] {card.id} ({wk}, {card.state})")
        click.echo(f"Q: {card.question}")
        started = time.monotonic()
        if not inp.wait():
            break
        click.echo(f"A: {card.answer or '(no answer written: check it against your notes)'}")
        value = inp.rating()
        if value is None:
            break
        rated = review.rate(store, card.id, value, progress.now(), plan=plan,
                            duration_ms=int((time.monotonic() - started) * 1000))
        seen.add(card.id)
        done += 1
        counts[value] += 1
        due_at = rated.card.due
        click.echo(f"  {review.RATINGS[value]}: next {review.human_delta(rated.interval)} ({_local(due_at)}), "
                   f"stability {rated.card.stability:.2f} d")
    now = progress.now()
    st = review.stats(store, plan, now, week=week)
    tally = ", ".join(f"{counts[k]} {name}" for k, name in review.RATINGS.items() if counts[k])
    click.echo(f"\nReviewed {done} card(s){': ' + tally if tally else ''}. {st['due']} still due.")
    line = _next_line(st, now)
    click.echo(line[:1].upper() + line[1:] + ".")


def register(group: click.Group) -> None:
    group.add_command(card_group)
    group.add_command(review_cmd)
