"""Feedback on a written summary ("Output: Write 1-page summary in your own words").

Three checks, each explained in the output so the learner can see why:

1. Length: one page is roughly 250-700 words (words: runs of letters and digits).
2. Concepts: for each key concept and key insight of the week, its content words are the words
   of its question and of its answer (the part in parentheses) minus stopwords, reduced to a
   crude stem (computing, computes, compute -> comput). A concept counts as covered when at
   least half of its question words and at least half of its answer words (at most 3) appear in
   the summary; two stems match when they are equal or one is a prefix of the other and the
   shorter has 5+ letters. The summary passes this check when it covers at least half of the
   week's concepts.
3. Own words: passages copied word for word from the plan's own text. A passage is a run of
   8 or more words that also appears, in the same order, in the plan (lines joined, URLs and
   [draft] marks removed), or a whole plan line of 6+ words. More than 10% of the summary's
   words inside such passages fails the check; fewer are listed as warnings.

A passing summary is recorded as the week's Output item (its note) and marks it done.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from zero2vllm.tracker.plan import DRAFT_MARK, RE_URL, Concept, Item, Plan, Week

MIN_WORDS, MAX_WORDS = 250, 700
SHINGLE = 8  # words in a row that count as copied
LINE_MIN = 6  # a whole plan line of this many words counts as copied too
MAX_COPIED = 0.10  # fraction of the summary's words
COVER_FRACTION = 0.5  # of a concept's question words, and of its answer words
ANSWER_WORDS_MAX = 3  # answer words needed at most
WEEK_FRACTION = 0.5  # of the week's concepts

RE_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")
STOP = set("""
a an the to of and or in on for with by your you from at its it is are be been being was were
just how what whats why when where who which whom whose can could should would will up their my
our this that these those into about as if so than then there here not no do does did doing done
has have had having get gets got make makes made one each only also more most less very much
many such other another any all both between while after before over under again out off per
via vs i we they he she them us me s t matter matters thing things way ways use used using need
needs needed why's it's what's that's there's happen happens
""".split())
OUTPUT_WORDS = re.compile(r"summary|summar|1-page|one-page|page|write-up|writeup|retrospective", re.I)


@dataclass
class Word:
    text: str  # as written
    norm: str  # lower case, apostrophes unified
    start: int
    end: int


@dataclass
class ConceptCoverage:
    id: str
    kind: str
    text: str
    words: list[str]  # content words (as in the plan)
    matched: list[str]
    missing: list[str]
    covered: bool


@dataclass
class CopiedPassage:
    text: str  # from the summary
    words: int
    plan_lines: list[int]


@dataclass
class SummaryCheck:
    week: int
    words: int
    length_ok: bool
    concepts: list[ConceptCoverage]
    concepts_needed: int
    copied: list[CopiedPassage]
    copied_words: int
    reasons: list[str] = field(default_factory=list)  # why it failed, one line each

    @property
    def covered(self) -> int:
        return sum(c.covered for c in self.concepts)

    @property
    def copied_fraction(self) -> float:
        return self.copied_words / self.words if self.words else 0.0

    @property
    def passed(self) -> bool:
        return not self.reasons

    def criteria(self) -> list[dict]:
        """The three checks in the shape of lab criteria (stored as evidence)."""
        return [
            {"name": "length", "passed": self.length_ok,
             "detail": f"{self.words} words (one page: {MIN_WORDS}-{MAX_WORDS})"},
            {"name": "key concepts", "passed": self.covered >= self.concepts_needed,
             "detail": f"{self.covered}/{len(self.concepts)} covered, {self.concepts_needed} needed"},
            {"name": "own words", "passed": self.copied_fraction <= MAX_COPIED,
             "detail": f"{self.copied_words} words ({self.copied_fraction:.0%}) copied from the plan "
                       f"in {len(self.copied)} passage(s)"},
        ]

    def metrics(self) -> dict:
        return {"week": self.week, "words": self.words, "concepts_covered": self.covered,
                "concepts_total": len(self.concepts), "copied_words": self.copied_words,
                "copied_fraction": round(self.copied_fraction, 4)}


# -- words ----------------------------------------------------------------------------------------
def words(text: str) -> list[Word]:
    return [Word(m.group(0), m.group(0).lower().replace("’", "'"), m.start(), m.end())
            for m in RE_WORD.finditer(text)]


def count_words(text: str) -> int:
    return len(RE_WORD.findall(text))


def _split_camel(text: str) -> str:
    """PagedAttention -> Paged Attention, so either spelling matches."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)


def stem(word: str) -> str:
    """A crude suffix stripper (not Porter): enough to match computing/computes/compute."""
    w = word.lower().replace("’", "'")
    w = re.sub(r"'s$", "", w)
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    for suffix in ("ations", "ation", "ings", "ing", "ities", "ity", "ments", "ment", "ness",
                   "ers", "er", "edly", "ed", "es", "ly", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def content_stems(text: str) -> list[tuple[str, str]]:
    """(word, stem) of the content words of `text`, in order, without repeats."""
    out, seen = [], set()
    for m in RE_WORD.finditer(_split_camel(text)):
        w = m.group(0).lower().replace("’", "'")
        if w in STOP or len(w) < 2 or w.isdigit():
            continue
        s = stem(w)
        if s not in seen:
            seen.add(s)
            out.append((m.group(0), s))
    return out


def _stem_match(a: str, b: str) -> bool:
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 5 and long_.startswith(short)


# -- the three checks ------------------------------------------------------------------------------
def concept_coverage(text: str, concepts: list[Concept]) -> list[ConceptCoverage]:
    """Which concepts the text covers: at least half of the question's content words, and at
    least half of the answer's (at most 3 needed: long answers are not recited in full)."""
    have = {s for _, s in content_stems(text)}
    out = []
    for c in concepts:
        question = content_stems(c.question)
        asked = {s for _, s in question}
        answer = [(w, s) for w, s in content_stems(c.answer or "") if s not in asked]
        found = lambda pairs: [w for w, s in pairs if any(_stem_match(s, h) for h in have)]  # noqa: E731
        got_q, got_a = found(question), found(answer)
        need_q = math.ceil(COVER_FRACTION * len(question))
        need_a = min(math.ceil(COVER_FRACTION * len(answer)), ANSWER_WORDS_MAX)
        words = [w for w, _ in question + answer]
        matched = got_q + got_a
        out.append(ConceptCoverage(id=c.id, kind=c.kind, text=c.text, words=words, matched=matched,
                                   missing=[w for w in words if w not in matched],
                                   covered=len(got_q) >= need_q and len(got_a) >= need_a and bool(matched)))
    return out


def _plan_words(plan: Plan) -> list[tuple[str, int]]:
    """(normalised word, line number) of the whole plan text, URLs and draft marks removed."""
    out = []
    for no, line in enumerate(plan.lines, start=1):
        line = RE_URL.sub(" ", line.replace(DRAFT_MARK, " "))
        out.extend((w.norm, no) for w in words(line))
    return out


def copied_passages(text: str, plan: Plan, n: int = SHINGLE) -> tuple[list[CopiedPassage], int]:
    """Runs of the summary found word for word in the plan; returns them and their word total."""
    mine = words(text)
    plan_words = _plan_words(plan)
    shingles: dict[tuple[str, ...], int] = {}
    for i in range(len(plan_words) - n + 1):
        key = tuple(w for w, _ in plan_words[i:i + n])
        shingles.setdefault(key, plan_words[i][1])
    hit = [False] * len(mine)
    lines_of: list[set[int]] = [set() for _ in mine]
    norms = [w.norm for w in mine]
    for i in range(len(mine) - n + 1):
        line = shingles.get(tuple(norms[i:i + n]))
        if line is not None:
            for j in range(i, i + n):
                hit[j] = True
                lines_of[j].add(line)
    # whole plan lines of LINE_MIN+ words (shorter than a shingle or not)
    by_line: dict[int, list[str]] = {}
    for w, no in plan_words:
        by_line.setdefault(no, []).append(w)
    for no, seq in by_line.items():
        k = len(seq)
        if k < LINE_MIN:
            continue
        for i in range(len(mine) - k + 1):
            if norms[i:i + k] == seq:
                for j in range(i, i + k):
                    hit[j] = True
                    lines_of[j].add(no)
    passages, i = [], 0
    while i < len(mine):
        if not hit[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(mine) and hit[j + 1]:
            j += 1
        lines = sorted(set().union(*lines_of[i:j + 1]))
        passages.append(CopiedPassage(text=text[mine[i].start:mine[j].end], words=j - i + 1, plan_lines=lines))
        i = j + 1
    return passages, sum(hit)


def check_summary(text: str, plan: Plan, week_number: int) -> SummaryCheck:
    week = plan.week(week_number)
    if week is None:
        have = ", ".join(str(w.number) for w in plan.weeks)
        raise ValueError(f"there is no week {week_number}; the plan has weeks {have}")
    n = count_words(text)
    coverage = concept_coverage(text, week.concepts)
    needed = math.ceil(WEEK_FRACTION * len(coverage))
    copied, copied_words = copied_passages(text, plan)
    check = SummaryCheck(week=week_number, words=n, length_ok=MIN_WORDS <= n <= MAX_WORDS,
                         concepts=coverage, concepts_needed=needed, copied=copied, copied_words=copied_words)
    if n < MIN_WORDS:
        check.reasons.append(f"too short: {n} words, a one-page summary has at least {MIN_WORDS}")
    elif n > MAX_WORDS:
        check.reasons.append(f"too long: {n} words, more than one page ({MAX_WORDS}); cut to the essentials")
    if check.covered < needed:
        check.reasons.append(f"covers {check.covered} of the week's {len(coverage)} key concepts; "
                             f"at least {needed} needed")
    if check.copied_fraction > MAX_COPIED:
        check.reasons.append(f"{check.copied_fraction:.0%} of the words are copied from the plan "
                             f"(at most {MAX_COPIED:.0%}); say it in your own words")
    return check


# -- where a passing summary goes ------------------------------------------------------------------
def output_item(week: Week) -> Item | None:
    """The week's item a summary fulfils: an Output item about a summary or a page (the only
    Output item if there is one), else a deliverable about a write-up."""
    outputs = [i for i in week.items if i.kind == "output"]
    named = [i for i in outputs if OUTPUT_WORDS.search(i.title)]
    if named:
        return named[0]
    if len(outputs) == 1:
        return outputs[0]
    writeups = [i for i in week.items if i.kind == "deliverable" and OUTPUT_WORDS.search(i.title)]
    return writeups[0] if writeups else None


def format_report(check: SummaryCheck, item: Item | None = None) -> str:
    """The feedback as text, with the method of each check."""
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    lines = [f"Summary check for week {check.week}"]
    lines.append(f"  {ok(check.length_ok)}  length: {check.words} words "
                 f"(one page is about {MIN_WORDS}-{MAX_WORDS} words)")
    need_ok = check.covered >= check.concepts_needed
    lines.append(f"  {ok(need_ok)}  key concepts: {check.covered} of {len(check.concepts)} covered "
                 f"({check.concepts_needed} needed)")
    for c in check.concepts:
        mark = "covered" if c.covered else "missing"
        lines.append(f"        [{mark}] {c.text}")
        lines.append(f"            found: {', '.join(c.matched) or '-'}; not found: {', '.join(c.missing) or '-'}")
    lines.append("        (a concept is covered when at least half of the content words of its question, and "
                 f"half of its answer's (at most {ANSWER_WORDS_MAX}), stemmed and without stopwords, "
                 "appear in your text)")
    own = check.copied_fraction <= MAX_COPIED
    lines.append(f"  {ok(own)}  own words: {check.copied_words} of {check.words} words "
                 f"({check.copied_fraction:.0%}) copied from the plan (at most {MAX_COPIED:.0%})")
    for p in check.copied:
        lo, hi = p.plan_lines[0], p.plan_lines[-1]
        where = f"line {lo}" if lo == hi else f"lines {lo}-{hi}"
        shown = p.text if len(p.text) <= 160 else p.text[:157] + "..."
        lines.append(f"        {p.words} words, plan {where}: \"{' '.join(shown.split())}\"")
    lines.append(f"        (copied: {SHINGLE}+ words in a row, or a whole plan line of {LINE_MIN}+ words, "
                 "found word for word in the plan)")
    if check.passed:
        lines.append("PASSED" + (f": recorded as the note of {item.id} and marked it done" if item else ""))
    else:
        lines.append("FAILED: " + "; ".join(check.reasons))
    return "\n".join(lines)
