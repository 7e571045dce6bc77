"""The sync client: the group server's HTTP API over urllib (standard library only), where the
server URL and token are kept, and `sync` (push then pull, docs/group.md "The client's side").
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from zero2vllm.group.sync_check import check_change
from zero2vllm.tracker import syncstore

CONFIG_NAME = "group.json"
BATCH = 1000
TIMEOUT_S = 30.0
RETRIES = 3  # a push or pull cut off is safe to send again (stable change ids, cursors)


class GroupError(Exception):
    """A one-line problem talking to the group server (network, auth, refused input)."""


# -- where the server and the token are kept (a 0600 file, not the SQLite store) -----------------
def config_path(home: Path) -> Path:
    return home / CONFIG_NAME


def load_config(home: Path) -> dict | None:
    path = config_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise GroupError(f"cannot read {path} ({exc}); run `z2v group join URL` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not isinstance(data.get("token"), str):
        raise GroupError(f"{path} is not a group config; run `z2v group join URL` again")
    return data


def save_config(home: Path, data: dict) -> Path:
    path = config_path(home)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the token is a password
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def normalise_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GroupError(f"{url!r} is not a server URL; give one like https://group.example.org")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


# -- HTTP -----------------------------------------------------------------------------------------
class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = TIMEOUT_S, retries: int = RETRIES):
        self.url, self.token, self.timeout, self.retries = normalise_url(url), token, timeout, retries

    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
                retries: int | None = None) -> dict:
        retries = retries or self.retries
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers = {"Accept": "application/json", "User-Agent": "z2v-sync"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(retries):
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    answer = json.loads(resp.read().decode("utf-8"))
                if not isinstance(answer, dict):
                    raise ValueError("not an object")
                return answer
            except urllib.error.HTTPError as exc:
                if exc.code in (502, 503, 504) and attempt + 1 < retries:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise GroupError(self._refusal(exc)) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # a cut-off answer too
                if attempt + 1 < retries:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                reason = getattr(exc, "reason", exc)
                raise GroupError(f"cannot reach the group server {self.url} ({reason}); "
                                 "check the URL and your network, then run it again") from None
            except ValueError:
                raise GroupError(f"{self.url} answered {path} with something that is not a JSON object; "
                                 "is it a zero2vllm group server?") from None
        raise AssertionError("unreachable")

    def _refusal(self, exc: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(exc.read().decode("utf-8"))["error"]["message"]
        except Exception:  # not our JSON error (a proxy's page): the status says enough
            message = exc.reason
        if exc.code == 401:
            return f"the group server refused the token ({message}); run `z2v group join {self.url}` again"
        if exc.code == 404:
            return f"{self.url} has no {urllib.parse.urlsplit(exc.url or '').path or 'such endpoint'}: is it a zero2vllm group server?"
        return f"the group server answered {exc.code}: {message}"

    def push(self, device: str, changes: list[dict]) -> dict:
        return self.request("POST", "/api/v1/sync/push", {"device": device, "changes": changes})

    def pull(self, after: int, limit: int = BATCH) -> dict:
        return self.request("GET", "/api/v1/sync/pull", query={"after": after, "limit": limit})

    def me(self) -> dict:
        return self.request("GET", "/api/v1/me")


# -- sync -------------------------------------------------------------------------------------------
def server_key(config: dict) -> str:
    """What the store's marks are bound to: this server and this learner."""
    learner = config.get("learner") or {}
    return f"{config['url']}#{learner.get('id', learner.get('email', ''))}"


def sync(store, config: dict, *, batch: int = BATCH, client: Client | None = None, now: str | None = None) -> dict:
    """Push every local change above the mark, then pull and apply everything new. Safe to cut
    off anywhere: the mark moves only after the server answered, the cursor with the apply."""
    client = client or Client(config["url"], config["token"])
    syncstore.bind_server(store, server_key(config))
    device = syncstore.state(store.conn)["device"]
    out = {"pushed": 0, "duplicates": 0, "pulled": 0, "applied": 0}
    while True:
        changes, last = syncstore.pending(store.conn, batch)
        if not changes:
            break
        answer = client.push(device, changes)
        syncstore.mark_pushed(store, last, answer.get("previous"), answer.get("cursor"))
        out["pushed"] += int(answer.get("accepted", 0))
        out["duplicates"] += int(answer.get("duplicates", 0))
    while True:
        cursor = syncstore.state(store.conn)["pull_cursor"]
        answer = client.pull(cursor, batch)
        changes = answer.get("changes")
        if not isinstance(changes, list) or not isinstance(answer.get("next"), int):
            raise GroupError(f"{client.url} answered the pull with something unexpected")
        mine = syncstore.known_ids(store.conn, [ch.get("id") for ch in changes if isinstance(ch, dict)])
        pulled = len(changes)
        changes = [ch for ch in changes if not (isinstance(ch, dict) and ch.get("id") in mine)]  # our own, back
        for ch in changes:  # what the server sent must apply here: checked as strictly as a push
            try:
                check_change({k: v for k, v in ch.items() if k != "seq"} if isinstance(ch, dict) else ch)
            except ValueError as exc:
                raise GroupError(f"{client.url} sent a change this store cannot apply ({exc}); nothing was applied")
        out["pulled"] += pulled
        out["applied"] += syncstore.apply_pulled(store, changes, answer["next"])
        if not answer.get("more") or not pulled:
            break
    syncstore.mark_synced(store, now or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return out
