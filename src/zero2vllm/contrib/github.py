"""Following a pull request through GitHub's REST API: opened, the `ready` label, CI, reviews
answered, merged. GITHUB_TOKEN is used when set; otherwise calls are unauthenticated (60 an
hour). The HTTP client is injectable: the tests replay recorded responses and never touch the
network (ReplayClient; ZERO2VLLM_GITHUB_REPLAY=DIR selects it for a child process too)."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

API = "https://api.github.com"
PR_URL = re.compile(r"^https?://github\.com/([\w.-]+)/([\w.-]+)/pull/(\d+)/?(?:[#?].*)?$")
PING_AFTER = timedelta(days=7)
GREEN = ("success", "neutral", "skipped")


class GitHubError(Exception):
    """One line: what GitHub answered and what to do."""


class Client(Protocol):
    def get(self, path: str, headers: dict[str, str]) -> tuple[int, object]: ...


class UrllibClient:
    def get(self, path: str, headers: dict[str, str]) -> tuple[int, object]:
        req = urllib.request.Request(API + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError) as exc:
            raise GitHubError(f"cannot reach GitHub: {getattr(exc, 'reason', exc)}") from None


class ReplayClient:
    """Answers from recorded JSON files in DIR, one per API path: /repos/a/b/pulls/1 is
    DIR/repos__a__b__pulls__1.json (query strings dropped). A path with no file is a 404."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.calls: list[str] = []

    @staticmethod
    def file_name(path: str) -> str:
        return path.split("?", 1)[0].strip("/").replace("/", "__") + ".json"

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, object]:
        self.calls.append(path)
        file = self.dir / self.file_name(path)
        if not file.is_file():
            return 404, {"message": "Not Found"}
        return 200, json.loads(file.read_text())


def default_client() -> Client:
    replay = os.environ.get("ZERO2VLLM_GITHUB_REPLAY")
    return ReplayClient(Path(replay)) if replay else UrllibClient()


def parse_pr_url(url: str) -> tuple[str, str, int]:
    m = PR_URL.match(url.strip())
    if not m:
        raise GitHubError(f"not a pull request URL: {url!r} (expected https://github.com/OWNER/REPO/pull/N)")
    return m.group(1), m.group(2), int(m.group(3))


class GitHub:
    def __init__(self, client: Client | None = None, token: str | None = None):
        self.client = client or default_client()
        self.token = token if token is not None else os.environ.get("GITHUB_TOKEN")

    def get(self, path: str):
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": "zero2vllm"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        status, data = self.client.get(path, headers)
        if status == 200:
            return data
        message = data.get("message", "") if isinstance(data, dict) else ""
        if status in (403, 429) and "rate limit" in message.lower():
            raise GitHubError("GitHub's rate limit is used up: set GITHUB_TOKEN (any token, no scopes)")
        if status == 404:
            raise GitHubError(f"GitHub has no {path} (404): check the URL (a private repo needs GITHUB_TOKEN)")
        raise GitHubError(f"GitHub answered {status} for {path}: {message or 'no message'}")


def now() -> datetime:
    """Now in UTC; ZERO2VLLM_NOW (ISO 8601) fixes the clock, the same rule as the tracker's
    (a check process cannot import the tracker)."""
    fixed = os.environ.get("ZERO2VLLM_NOW")
    if fixed:
        return datetime.fromisoformat(fixed).astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass
class PRStatus:
    url: str
    title: str
    author: str
    state: str  # open | closed
    draft: bool
    merged: bool
    created_at: datetime
    labels: list[str]
    checks: dict[str, str]  # name -> success | failure | pending | ...
    reviews: list[dict]  # by others: {"user", "state", "at"}
    unanswered: list[dict] = field(default_factory=list)  # review comments by others, no reply

    @property
    def ready(self) -> bool:
        return "ready" in self.labels

    @property
    def failing(self) -> dict[str, str]:
        return {n: c for n, c in self.checks.items() if c not in GREEN and c != "pending"}

    @property
    def pending(self) -> list[str]:
        return [n for n, c in self.checks.items() if c == "pending"]

    def stage(self) -> str:
        if self.merged:
            return "merged"
        if self.state == "closed":
            return "closed without merging"
        if self.draft:
            return "draft"
        if not self.reviews:
            return "waiting for a first review"
        if self.unanswered:
            return f"{len(self.unanswered)} review comment(s) to answer"
        if not self.ready:
            return "reviewed, waiting for the ready label"
        return "ready, waiting for CI and approval" if self.pending or self.failing else "ready, CI green"

    def ping(self, now: datetime) -> str | None:
        """A polite nudge when the PR has waited PING_AFTER with no review."""
        if self.merged or self.state != "open" or self.draft or self.reviews:
            return None
        waited = now - self.created_at
        if waited < PING_AFTER:
            return None
        return (f"no review after {waited.days} days: a short, polite comment helps, e.g. "
                f"\"Hi! Could someone take a look when you have time? Happy to change anything.\" "
                f"(or ask in the #pr-reviews channel of vLLM's Slack)")


def follow(url: str, gh: GitHub | None = None) -> PRStatus:
    """Everything the pr-merged lab and `z2v contrib status` need about one PR."""
    owner, repo, number = parse_pr_url(url)
    gh = gh or GitHub()
    base = f"/repos/{owner}/{repo}"
    pr = gh.get(f"{base}/pulls/{number}")
    author = pr["user"]["login"]
    sha = pr["head"]["sha"]
    checks: dict[str, str] = {}
    for run in gh.get(f"{base}/commits/{sha}/check-runs?per_page=100").get("check_runs", []):
        done = run.get("status") == "completed"
        checks[run["name"]] = (run.get("conclusion") or "pending") if done else "pending"
    for st in gh.get(f"{base}/commits/{sha}/status").get("statuses", []):
        checks[st["context"]] = {"success": "success", "pending": "pending"}.get(st["state"], "failure")
    reviews = [{"user": r["user"]["login"], "state": r["state"], "at": r.get("submitted_at")}
               for r in gh.get(f"{base}/pulls/{number}/reviews?per_page=100") if r["user"]["login"] != author]
    comments = gh.get(f"{base}/pulls/{number}/comments?per_page=100")
    replied = {c.get("in_reply_to_id") for c in comments if c["user"]["login"] == author}
    unanswered = [{"user": c["user"]["login"], "path": c.get("path"), "body": c["body"][:120]}
                  for c in comments if c["user"]["login"] != author and not c.get("in_reply_to_id")
                  and c["id"] not in replied]
    return PRStatus(url=url, title=pr["title"], author=author, state=pr["state"],
                    draft=bool(pr.get("draft")), merged=bool(pr.get("merged") or pr.get("merged_at")),
                    created_at=_time(pr["created_at"]), labels=[lb["name"] for lb in pr.get("labels", [])],
                    checks=checks, reviews=reviews, unanswered=unanswered)
