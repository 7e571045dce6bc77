"""The study plan: a data model, a parser for the plain-text format learners write, and an emitter.

The format is the one of "8-Week Plan: Zero to vLLM Contributor":

    WEEK 1: Transformer Fundamentals
    Goal: Understand how transformers work
    Monday-Tuesday (2 hours):
    Watch: Karpathy "Intro to Large Language Models" (1 hour) : https://... - watched for 30 min
    HANDS-ON: Implement tiny transformer from scratch
    Use PyTorch                          <- a detail line of the HANDS-ON
    Deliverable: Working character-level transformer
    Key concepts to internalize:
    What is attention computing? (similarity between query and keys)

Round trip: `emit(parse(text))` is `text`, byte for byte. The parser keeps every line, and the
emitter rewrites only the progress annotation (" - watched for 30 min") of items whose progress
changed. Lines we add to the user's plan end in " [draft]" so the user can see and replace them.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from zero2vllm.tracker.durations import format_duration

DRAFT_MARK = "[draft]"

KIND_ALIASES = {
    "watch": "watch", "read": "read", "google": "google", "search": "google", "browse": "browse",
    "output": "output", "write": "output", "focus": "focus", "focus on": "focus",
    "understand": "understand", "hands-on": "hands-on", "hands on": "hands-on", "handson": "hands-on",
    "lab": "hands-on", "project": "project", "deliverable": "deliverable",
}
KINDS = sorted(set(KIND_ALIASES.values())) + ["task"]
PROJECT_KINDS = ("hands-on", "project")

DAY_NAMES = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}
DAY_GROUPS = {
    "weekend": (5, 6), "weekends": (5, 6), "weekday": (0, 1, 2, 3, 4), "weekdays": (0, 1, 2, 3, 4),
    "daily": tuple(range(7)), "everyday": tuple(range(7)),
}
STOPWORDS = {
    "a", "an", "the", "to", "of", "and", "or", "in", "on", "for", "with", "by", "your", "you",
    "from", "at", "its", "is", "are", "be", "just", "how", "what", "why", "s", "can", "up",
    "their", "my", "our", "this", "that", "these", "those", "it", "into", "about",
}

class _LazyRe:
    """A pattern compiled on first use: `z2v status` reads a cached parse and never needs them
    (compiling all of them is a visible part of its start-up)."""

    def __init__(self, pattern: str, flags: int = 0):
        self.pattern, self.flags, self._re = pattern, flags, None

    def __getattr__(self, name):
        if self._re is None:
            self._re = re.compile(self.pattern, self.flags)
        return getattr(self._re, name)


RE_WEEK = _LazyRe(r"^\s*week\s+(\d+)\s*(?:[:.\-–—]\s*(.*?))?\s*$", re.I)
RE_GOAL = _LazyRe(r"^\s*goals?\s*:\s*(.*?)\s*$", re.I)
RE_COMMITMENT = _LazyRe(r"^\s*time\s+commitment\s*:\s*(.*?)\s*$", re.I)
RE_SECTION = _LazyRe(r"^\s*key\s+([a-z ]+?)(?:\s+to\s+[a-z ]+)?\s*:\s*$", re.I)
RE_BLOCK = _LazyRe(
    r"^\s*(?P<days>[A-Za-z][A-Za-z ,&/+\-–]*?)\s*"
    r"(?:\((?P<lo>\d+(?:\.\d+)?)\s*(?:[-–]\s*(?P<hi>\d+(?:\.\d+)?))?\s*(?P<unit>hours?|hrs?|h|minutes?|mins?|m)\))?"
    r"\s*:\s*$",
    re.I,
)
RE_LABEL = _LazyRe(r"^\s*(?P<label>[A-Za-z][A-Za-z\- ]{0,20}?)\s*:\s+(?P<rest>\S.*?)\s*$")
RE_URL = _LazyRe(r"https?://[^\s)>\]]+")
RE_DURATION_PAREN = _LazyRe(
    r"\(\s*(?P<lo>\d+(?:\.\d+)?)\s*(?:[-–]\s*(?P<hi>\d+(?:\.\d+)?))?\s*"
    r"(?P<unit>hours?|hrs?|h|minutes?|mins?|min|m)\b[^)]*\)",
    re.I,
)
RE_QUOTED = _LazyRe(r"[\"“]([^\"”]+)[\"”]")

# -- progress annotations: " - watched for 30 min", " - read 2 of 4 sections", " - done" --------
_DUR = r"\d+(?:\.\d+)?\s*(?:hours?|hrs?|h|minutes?|mins?|min|m)(?:\s*\d+(?:\.\d+)?\s*(?:minutes?|mins?|min|m))?"
_VERBS = r"watched|read|spent|did|worked|studied|practi[cs]ed|coded|listened|done|went through|covered"
RE_ANNOTATION = _LazyRe(
    r"\s+[-–—]\s+(?P<ann>"
    r"(?:(?:" + _VERBS + r")\s+(?:for\s+)?)?" + _DUR + r"(?:\s+so\s+far)?"
    r"|(?:" + _VERBS + r"|finished|completed)\s+\d+\s*(?:of|/)\s*\d+(?:\s+[a-z]+)?(?:\s+so\s+far)?"
    r"|(?:done|completed|complete|finished|skipped|in progress|started)(?:\s*\((?:" + _DUR + r")\))?"
    r"|\d{1,3}\s*%(?:\s+(?:done|complete))?"
    r")\s*$",
    re.I,
)


class PlanError(ValueError):
    """A plan text we cannot read; names the line so the user can fix it."""

    def __init__(self, message: str, line_no: int | None = None, line: str | None = None):
        self.message, self.line_no, self.line = message, line_no, line
        where = f"line {line_no}: " if line_no else ""
        shown = f" ({line.strip()[:80]!r})" if line and line.strip() else ""
        super().__init__(f"{where}{message}{shown}")


@dataclass
class Progress:
    """What an annotation says: time spent, a status, or "2 of 4 sections"."""

    seconds: int | None = None
    status: str | None = None  # done / in_progress / skipped
    done: float | None = None
    total: float | None = None
    unit: str | None = None


@dataclass
class Detail:
    """A step under a HANDS-ON or PROJECT ("Use PyTorch")."""

    text: str
    line: int
    draft: bool = False


@dataclass
class Item:
    id: str
    week: int
    kind: str
    label: str
    title: str
    url: str | None
    minutes: int | None
    minutes_max: int | None
    block: int | None
    line: int
    details: list[Detail] = field(default_factory=list)
    parent: str | None = None
    draft: bool = False
    annotation: str | None = None  # the annotation text as written, without " - "
    progress: Progress | None = None


@dataclass
class Block:
    label: str
    weekdays: tuple[int, ...]
    hours_min: float | None
    hours_max: float | None
    line: int
    draft: bool = False
    items: list[str] = field(default_factory=list)


@dataclass
class Concept:
    id: str
    week: int
    kind: str  # concept | insight
    text: str
    question: str
    answer: str | None
    line: int
    draft: bool = False


@dataclass
class Week:
    number: int
    title: str
    goal: str | None
    line: int
    draft: bool = False
    blocks: list[Block] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    concepts: list[Concept] = field(default_factory=list)

    @property
    def hours_min(self) -> float:
        return sum(b.hours_min or 0 for b in self.blocks)

    @property
    def hours_max(self) -> float:
        return sum(b.hours_max or b.hours_min or 0 for b in self.blocks)


@dataclass
class Commitment:
    text: str
    weekly_min: float | None
    weekly_max: float | None
    weekday_hours: float | None
    weekend_min: float | None
    weekend_max: float | None


class RefError(ValueError):
    """An item reference that names no item, or several."""


def _haystack(item: Item, details: bool = False) -> str:
    extra = " ".join(d.text for d in item.details) if details else ""
    return f"{item.id} {item.label} {item.title} {item.kind} {extra}".lower()


def _ambiguous(ref: str, found: list[Item]) -> str:
    shown = ", ".join(i.id for i in found[:6]) + (" ..." if len(found) > 6 else "")
    return f"{ref!r} matches {len(found)} items: {shown}; use more words or the id"


@dataclass
class Plan:
    title: str
    commitment: Commitment | None
    weeks: list[Week]
    lines: list[str]
    newline: str = "\n"
    final_newline: bool = True
    announced_weeks: int | None = None
    ends: tuple = ()  # each line's own ending ("\r\n", "\r", "\n"), so emit keeps the author's bytes

    def items(self) -> list[Item]:
        return [item for week in self.weeks for item in week.items]

    def item(self, item_id: str) -> Item | None:
        return next((i for i in self.items() if i.id == item_id), None)

    def find(self, ref: str) -> Item:
        """The item REF names: an id, a unique id prefix or suffix, or words from the title
        ("karpathy intro"). The one lookup of what people type; RefError says what matched."""
        items = self.items()
        key = ref.strip().lower()
        if not key:
            raise RefError("empty item reference; give an id like w1.illustrated-transformer or title words")
        for item in items:
            if item.id == key:
                return item
        for test in (lambda i: i.id.startswith(key), lambda i: i.id.split(".", 1)[1].startswith(key)):
            found = [i for i in items if test(i)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RefError(_ambiguous(ref, found))
        words = re.findall(r"[a-z0-9]+", key)
        for details in (False, True):  # titles first; a project's steps only when no title matches
            found = [i for i in items if all(re.search(rf"\b{re.escape(w)}", _haystack(i, details)) for w in words)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RefError(_ambiguous(ref, found))
        scored = sorted(
            items,
            key=lambda i: -max(
                difflib.SequenceMatcher(None, key, i.id).ratio(),
                difflib.SequenceMatcher(None, key, i.title.lower()).ratio(),
            ),
        )[:3]
        close = ", ".join(i.id for i in scored)
        raise RefError(f"no item matches {ref!r}; closest: {close} (see `z2v week N` for ids)")

    def week(self, number: int) -> Week | None:
        return next((w for w in self.weeks if w.number == number), None)

    def concepts(self) -> list[Concept]:
        return [c for w in self.weeks for c in w.concepts]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("lines")
        d.pop("newline")
        d.pop("final_newline")
        d.pop("ends")
        for w, week in zip(d["weeks"], self.weeks):
            w["hours_min"], w["hours_max"] = week.hours_min, week.hours_max
        return d


# -- parsing ------------------------------------------------------------------------------------
MAX_PLAN_BYTES = 2 * 1024 * 1024  # the one cap on a plan text, for the CLI and the dashboard


def read_capped(path, limit: int, what: str = "file") -> bytes:
    """A regular file's bytes, at most `limit` of them. /dev/zero, a FIFO or a directory would
    read forever or fail oddly, so only regular files are read; OSError stays OSError."""
    import os
    import stat

    with open(path, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise PlanError(f"not a regular file (a device, pipe or directory); give a {what} saved on disk")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise PlanError(f"over {limit // 1024} KiB, the limit for a {what}; is this the right file?")
    return data


def decode(data: bytes) -> str:
    """Bytes of a plan file to text, refusing binary data with the line it starts on."""
    if b"\x00" in data:
        line_no = data[: data.index(b"\x00")].count(b"\n") + 1
        raise PlanError("this is not a text file (binary data); give a plain-text plan", line_no)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = data[: exc.start].count(b"\n") + 1
        raise PlanError("this is not UTF-8 text; save the plan as UTF-8", line_no) from None


def parse(text: str) -> Plan:
    if not text.strip():
        raise PlanError("the plan is empty; it needs at least a 'WEEK 1: ...' heading", 1)
    # any mix of CRLF, lone CR and LF ends a line (a file edited on several systems); each
    # line's ending is kept so `emit` gives back the author's bytes
    parts = RE_LINE_END.split(text)
    lines, ends = parts[0::2], parts[1::2]
    final_newline = len(ends) == len(lines) - 1 and lines[-1] == "" and bool(ends)
    if final_newline:
        lines.pop()
    newline = max(("\n", "\r\n", "\r"), key=ends.count) if ends else "\n"
    plan = _Parser(lines, newline, final_newline).run()
    plan.ends = tuple(ends)
    return plan


RE_LINE_END = re.compile(r"(\r\n|\r|\n)")


class _Parser:
    def __init__(self, lines: list[str], newline: str, final_newline: bool):
        self.lines, self.newline, self.final_newline = lines, newline, final_newline
        self.weeks: list[Week] = []
        self.title: str | None = None
        self.heading: str | None = None
        self.commitment: Commitment | None = None
        self.section: str | None = None  # None | concepts | insights
        self.project: Item | None = None  # the HANDS-ON/PROJECT whose detail lines follow
        self.ids: set[str] = set()

    def run(self) -> Plan:
        for no, line in enumerate(self.lines, start=1):
            self.line(no, line)
        if not self.weeks:
            raise PlanError(
                f"no 'WEEK N: title' heading in {len(self.lines)} lines; "
                "a plan needs at least one, like 'WEEK 1: Transformer Fundamentals'",
                1, self.lines[0],
            )
        announced = None
        if self.title and (m := re.match(r"\s*(\d+)[- ]week", self.title, re.I)):
            announced = int(m.group(1))
        return Plan(
            title=self.title or self.heading or "Study plan",
            commitment=self.commitment,
            weeks=self.weeks,
            lines=self.lines,
            newline=self.newline,
            final_newline=self.final_newline,
            announced_weeks=announced,
        )

    @property
    def week(self) -> Week | None:
        return self.weeks[-1] if self.weeks else None

    def line(self, no: int, line: str) -> None:
        text = line.strip()
        if not text:
            return
        draft = text.endswith(DRAFT_MARK)
        if draft:
            text = text[: -len(DRAFT_MARK)].rstrip()
        if m := RE_WEEK.match(text):
            return self.start_week(no, line, int(m.group(1)), m.group(2) or "", draft)
        week = self.week
        if week is None:
            return self.preamble(no, line, text)
        draft = draft or week.draft
        if (m := RE_GOAL.match(text)) and week.goal is None:
            week.goal = m.group(1)
            return
        if m := RE_SECTION.match(text):
            word = m.group(1).lower()
            self.section = "insights" if re.search(r"insight|takeaway|lesson", word) else "concepts"
            self.project = None
            return
        if block := self.block(no, text, draft):
            week.blocks.append(block)
            self.section, self.project = None, None
            return
        if self.section:
            return self.concept(no, text, draft)
        self.item(no, line, text, draft)

    def start_week(self, no: int, line: str, number: int, title: str, draft: bool) -> None:
        if any(w.number == number for w in self.weeks):
            raise PlanError(f"week {number} appears twice; give each week its own number", no, line)
        self.weeks.append(Week(number=number, title=title, goal=None, line=no, draft=draft))
        self.section, self.project = None, None

    def preamble(self, no: int, line: str, text: str) -> None:
        if self.block(no, text, False):
            raise PlanError("a day block comes before any 'WEEK N:' heading; move it under a week", no, line)
        m = RE_LABEL.match(text)
        if m and m.group("label").lower() in KIND_ALIASES:
            raise PlanError("an item comes before any 'WEEK N:' heading; move it under a week", no, line)
        if m := RE_COMMITMENT.match(text):
            self.commitment = parse_commitment(m.group(1))
        elif text.startswith("#"):
            self.heading = self.heading or text.lstrip("#").strip()
        elif self.title is None:
            self.title = text

    def block(self, no: int, text: str, draft: bool) -> Block | None:
        m = RE_BLOCK.match(text)
        if not m:
            return None
        weekdays = parse_days(m.group("days"))
        if not weekdays and m.group("lo") is None:
            return None  # "Something:" alone is not a day block
        lo = hi = None
        if m.group("lo") is not None:
            scale = 1 / 60 if m.group("unit").lower().startswith("m") else 1
            lo = float(m.group("lo")) * scale
            hi = float(m.group("hi")) * scale if m.group("hi") else lo
        return Block(label=m.group("days").strip(), weekdays=weekdays, hours_min=lo, hours_max=hi,
                     line=no, draft=draft)

    def concept(self, no: int, text: str, draft: bool) -> None:
        week = self.week
        kind = "insight" if self.section == "insights" else "concept"
        question, answer = text, None
        if m := re.match(r"^(.*?)\s*\(([^()]*)\)\s*$", text):
            question, answer = m.group(1), m.group(2)
        cid = self.unique_id(f"w{week.number}.{'k' if kind == 'concept' else 'i'}.{slug(question)}")
        week.concepts.append(Concept(id=cid, week=week.number, kind=kind, text=text, question=question,
                                     answer=answer, line=no, draft=draft))

    def item(self, no: int, line: str, text: str, draft: bool) -> None:
        week = self.week
        content, annotation, progress = split_annotation(text)
        m = RE_LABEL.match(content)
        label = m.group("label") if m else ""
        kind = KIND_ALIASES.get(label.lower().strip()) if m else None
        if self.project is not None and kind != "deliverable" and kind not in PROJECT_KINDS:
            self.project.details.append(Detail(text, no, draft))  # a step of the project above
            return
        if kind is None:
            if m and len(label.split()) <= 2 and not label[0].isdigit():
                kind = "task"  # "Practice: ...", "Listen: ..." : any other item verb
            else:
                kind, label = "task", ""
        rest = m.group("rest") if label else content
        rest = rest.rstrip()
        url = (u := RE_URL.search(rest)) and u.group(0)
        minutes = minutes_max = None
        if d := RE_DURATION_PAREN.search(rest):
            scale = 1 if d.group("unit").lower().startswith("m") else 60
            minutes = round(float(d.group("lo")) * scale)
            minutes_max = round(float(d.group("hi")) * scale) if d.group("hi") else minutes
        title = clean_title(rest)
        item = Item(
            id=self.unique_id(f"w{week.number}.{slug(id_words(rest) or label or 'item')}"),
            week=week.number, kind=kind, label=label, title=title, url=url, minutes=minutes,
            minutes_max=minutes_max, block=len(week.blocks) - 1 if week.blocks else None, line=no,
            draft=draft, annotation=annotation, progress=progress,
        )
        if kind == "deliverable" and self.project is not None:
            item.parent = self.project.id
            self.project = None  # a deliverable closes its project's list of steps
        elif kind in PROJECT_KINDS:
            self.project = item
        week.items.append(item)
        if week.blocks:
            week.blocks[-1].items.append(item.id)

    def unique_id(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self.ids:
            candidate, n = f"{base}-{n}", n + 1
        self.ids.add(candidate)
        return candidate


def parse_days(text: str) -> tuple[int, ...]:
    """"Monday-Tuesday" -> (0, 1); "Weekend" -> (5, 6); "Mon, Wed & Fri" -> (0, 2, 4)."""
    words = re.split(r"\s*(?:,|&|/|\+|\band\b)\s*", text.strip().lower())
    days: list[int] = []
    for word in words:
        word = word.strip()
        if not word:
            continue
        if m := re.fullmatch(r"([a-z]+)\s*(?:-|–|to|through)\s*([a-z]+)", word):
            a, b = DAY_NAMES.get(m.group(1)), DAY_NAMES.get(m.group(2))
            if a is None or b is None:
                return ()
            days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        elif word in DAY_NAMES:
            days.append(DAY_NAMES[word])
        elif word.replace(" ", "") in DAY_GROUPS:
            days.extend(DAY_GROUPS[word.replace(" ", "")])
        else:
            return ()
    return tuple(sorted(set(days)))


def parse_commitment(text: str) -> Commitment:
    """"10-15 hours/week (2 hours weekdays + 5-10 hours weekend)" -> numbers."""
    def rng(pattern: str) -> tuple[float | None, float | None]:
        m = re.search(pattern, text, re.I)
        if not m:
            return None, None
        lo = float(m.group(1))
        return lo, float(m.group(2)) if m.group(2) else lo

    num = r"(\d+(?:\.\d+)?)\s*(?:[-–]\s*(\d+(?:\.\d+)?))?\s*(?:hours?|hrs?|h)"
    weekly = rng(num + r"\s*(?:/|per|a|each)\s*week")
    if weekly == (None, None):
        weekly = rng(num)
    weekday = rng(num + r"\s*(?:on\s+)?weekdays?")
    weekend = rng(num + r"\s*(?:on\s+|at\s+(?:the\s+)?)?weekends?")
    return Commitment(text=text, weekly_min=weekly[0], weekly_max=weekly[1], weekday_hours=weekday[0],
                      weekend_min=weekend[0], weekend_max=weekend[1])


def split_annotation(text: str) -> tuple[str, str | None, Progress | None]:
    """"Watch: X - watched for 30 min" -> ("Watch: X", "watched for 30 min", Progress(1800 s))."""
    m = RE_ANNOTATION.search(text)
    if not m:
        return text, None, None
    ann = m.group("ann")
    return text[: m.start()], ann, parse_progress(ann)


def parse_progress(ann: str) -> Progress:
    from zero2vllm.tracker.durations import parse_duration

    a = ann.lower().strip()
    p = Progress()
    if m := re.match(r"^(done|completed|complete|finished|skipped|in progress|started)\b", a):
        word = m.group(1)
        p.status = "skipped" if word == "skipped" else "in_progress" if word in ("in progress", "started") else "done"
        if t := re.search(r"\((.*)\)", a):
            p.seconds = parse_duration(t.group(1))
        return p
    if m := re.search(r"(\d+)\s*(?:of|/)\s*(\d+)(?:\s+([a-z]+))?", a):
        p.done, p.total, p.unit = float(m.group(1)), float(m.group(2)), m.group(3)
        p.status = "done" if p.done >= p.total else "in_progress"
        return p
    if m := re.match(r"^(\d{1,3})\s*%", a):
        p.done, p.total, p.unit = float(m.group(1)), 100.0, "%"
        p.status = "done" if p.done >= 100 else "in_progress"
        return p
    dur = re.sub(r"^(?:(?:" + _VERBS + r")\s+)?(?:for\s+)?", "", a)
    dur = re.sub(r"\s+so\s+far$", "", dur)
    p.seconds = parse_duration(dur)
    p.status = "in_progress"
    return p


def format_annotation(item: Item, status: str, seconds: int, progress: Progress | None = None) -> str | None:
    """The annotation a learner would write for this state, in their own style."""
    if status == "skipped":
        return "skipped"
    if status == "done":
        return f"done ({format_duration(seconds)})" if seconds else "done"
    if progress and progress.total:
        verb = {"watch": "watched", "read": "read"}.get(item.kind, "done")
        unit = f" {progress.unit}" if progress.unit and progress.unit != "%" else ""
        if progress.unit == "%":
            return f"{progress.done:g}%"
        return f"{verb} {progress.done:g} of {progress.total:g}{unit}"
    if seconds:
        spoken = format_duration(seconds, style="long")
        if item.kind == "watch":
            return f"watched for {spoken}"
        if item.kind == "read":
            return f"read for {spoken}"
        return f"{format_duration(seconds)} so far"
    if status == "in_progress":
        return "in progress"
    return None


def emit(plan: Plan, annotations: dict[str, str | None] | None = None) -> str:
    """The plan as text. `annotations` maps item ids to a new annotation (None removes it);
    items not in it keep the line exactly as written."""
    annotations = annotations or {}
    lines = list(plan.lines)
    for item in plan.items():
        if item.id not in annotations or annotations[item.id] == item.annotation:
            continue
        line = lines[item.line - 1]
        content = line.rstrip()
        if item.annotation is not None:
            m = RE_ANNOTATION.search(content)
            content = content[: m.start()] if m else content
        new = annotations[item.id]
        lines[item.line - 1] = content + (f" - {new}" if new else "")
    ends = list(getattr(plan, "ends", ()) or ())
    ends += [plan.newline] * (len(lines) - len(ends))
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i < len(lines) - 1 or plan.final_newline:
            out.append(ends[i])
    return "".join(out)


# -- ids and titles -----------------------------------------------------------------------------
def _ascii_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = text.replace("'", "")
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text)


def id_words(rest: str) -> str:
    """The words an id is made of: a quoted title if there is one, else the text, no URL."""
    rest = RE_URL.sub(" ", rest)
    rest = RE_DURATION_PAREN.sub(" ", rest)
    quoted = RE_QUOTED.search(rest)
    return quoted.group(1) if quoted else rest


def slug(text: str, max_words: int = 4, max_len: int = 32) -> str:
    words = [w for w in _ascii_words(text) if w not in STOPWORDS] or _ascii_words(text)
    out: list[str] = []
    for w in words:
        if len(out) >= max_words or (out and len("-".join(out + [w])) > max_len):
            break
        out.append(w[:max_len])
    return "-".join(out) or "item"


def clean_title(rest: str) -> str:
    """Title without the URL and its separators: 'X (1 hour) : https://..' -> 'X (1 hour)'."""
    title = RE_URL.sub("", rest)
    title = re.sub(r"\s*[:\-–—]\s*$", "", title.strip())
    return re.sub(r"\s{2,}", " ", title).strip()
