"""Authorization on the group server: each role against each endpoint, by URL and by API;
sessions, CSRF, invites, login rate limits and token revocation, on a real PostgreSQL."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("psycopg")
pytest.importorskip("flask")

from zero2vllm.group import auth, db, invites, sessions  # noqa: E402
from zero2vllm.group.app import create_app  # noqa: E402

PASSWORD = "correct horse battery"
ROLES = ("admin", "mentor", "learner", "anonymous")
# Pages of the dashboard (g3's) that need a login; the lead fills this at merge time.
PROTECTED_PAGES: list[str] = []
# (path, roles that may open it) for the pages of accounts.py.
ACCOUNT_PAGES = [
    ("/group/settings", {"admin", "mentor", "learner"}),
    ("/group/tokens", {"admin", "mentor", "learner"}),
    ("/group/admin/invites", {"admin"}),
]
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(pg_url):
    app = create_app(pg_url, secret_key=b"k" * 32, pool_size=2, testing=True)
    yield app
    app.extensions["z2v_pool"].close()


@pytest.fixture
def people(app, pg_url):
    """One account of each role, plus a second learner; email -> id."""
    with db.connect(pg_url) as conn:
        ids = {role: auth.create_account(conn, f"{role}@example.org", role.title(), role, PASSWORD)
               for role in ("admin", "mentor", "learner")}
        ids["other"] = auth.create_account(conn, "other@example.org", "Other", "learner", PASSWORD)
    return ids


def rows(pg_url, sql, *args):
    with db.connect(pg_url) as conn:
        return conn.execute(sql, args).fetchall()


def csrf_of(client, path="/group/login") -> str:
    return CSRF_RE.search(client.get(path).get_data(as_text=True)).group(1)


def logged_in(app, role: str):
    client = app.test_client()
    if role != "anonymous":
        resp = client.post("/group/login", data={"email": f"{role}@example.org", "password": PASSWORD,
                                                  "csrf_token": csrf_of(client)})
        assert resp.status_code == 303, resp.get_data(as_text=True)
    return client


def token_for(app, email: str, password: str = PASSWORD) -> str:
    resp = app.test_client().post("/api/v1/tokens", json={"email": email, "password": password,
                                                         "name": "laptop"})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# -- pages by role ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_page(app, people, role):
    client = logged_in(app, role)
    for path, allowed in ACCOUNT_PAGES:
        resp = client.get(path)
        if role == "anonymous":
            assert resp.status_code == 302 and "/group/login?next=" in resp.headers["Location"], path
        elif role in allowed:
            assert resp.status_code == 200, path
        else:
            assert resp.status_code == 403, path
    for path in PROTECTED_PAGES:
        resp = client.get(path)
        assert (resp.status_code == 302) == (role == "anonymous"), path


def test_login_sets_a_hashed_httponly_lax_session_and_logout_ends_it(app, people, pg_url):
    client = app.test_client()
    resp = client.post("/group/login", data={"email": "Learner@Example.org", "password": PASSWORD,
                                              "csrf_token": csrf_of(client), "next": "/group/tokens"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/group/tokens"
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith(sessions.SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http on loopback (the test client's localhost)
    value = cookie.split(";")[0].split("=", 1)[1]
    stored = rows(pg_url, "SELECT id_hash, account_id FROM web_session")
    assert stored == [{"id_hash": auth.token_hash(value), "account_id": people["learner"]}]
    assert client.get("/group/settings").status_code == 200
    token = csrf_of(client, "/group/settings")
    assert client.post("/group/logout", data={"csrf_token": token}).status_code == 303
    assert rows(pg_url, "SELECT * FROM web_session") == []
    assert client.get("/group/settings").status_code == 302


def test_cookies_are_secure_off_loopback(app, people):
    client = app.test_client()
    page = client.get("/group/login", base_url="https://group.example.org")
    assert "Secure" in page.headers["Set-Cookie"]
    resp = client.post("/group/login", base_url="http://group.example.org",
                       data={"email": "learner@example.org", "password": PASSWORD,
                             "csrf_token": CSRF_RE.search(page.get_data(as_text=True)).group(1)})
    assert resp.status_code == 303
    assert all("Secure" in c for c in resp.headers.getlist("Set-Cookie"))


def test_a_wrong_password_is_refused_and_recorded(app, people, pg_url):
    client = app.test_client()
    resp = client.post("/group/login", data={"email": "learner@example.org", "password": "nope-nope",
                                              "csrf_token": csrf_of(client)})
    assert resp.status_code == 401 and "do not match" in resp.get_data(as_text=True)
    assert rows(pg_url, "SELECT email, ok FROM login_attempt") == [{"email": "learner@example.org", "ok": False}]
    assert rows(pg_url, "SELECT * FROM web_session") == []


def test_posts_without_the_csrf_token_are_refused(app, people, pg_url):
    client = app.test_client()
    assert client.post("/group/login", data={"email": "learner@example.org",
                                             "password": PASSWORD}).status_code == 403
    assert client.post("/group/login", data={"email": "learner@example.org", "password": PASSWORD,
                                             "csrf_token": "0" * 64}).status_code == 403
    client = logged_in(app, "learner")
    assert client.post("/group/settings", data={"share_notes": "on"}).status_code == 403
    other = logged_in(app, "other")  # another session's token is not this one's
    assert client.post("/group/settings", data={"share_notes": "on",
                                                "csrf_token": csrf_of(other, "/group/settings")}).status_code == 403
    assert client.post("/group/logout").status_code == 403
    assert rows(pg_url, "SELECT share_notes FROM account WHERE id = %s", people["learner"]) == [{"share_notes": False}]
    assert client.post("/group/settings", data={"share_notes": "on",
                                                "csrf_token": csrf_of(client, "/group/settings")}).status_code == 200
    assert rows(pg_url, "SELECT share_notes, on_board FROM account WHERE id = %s",
                people["learner"]) == [{"share_notes": True, "on_board": False}]


def test_security_headers(app):
    resp = app.test_client().get("/group/login")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in resp.headers["Cache-Control"]
    assert "http" not in re.sub(r'href="/', "", resp.get_data(as_text=True)).split("<main>")[0]
