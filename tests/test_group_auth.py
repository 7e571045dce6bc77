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
EVERYONE, STAFF = {"admin", "mentor", "learner"}, {"admin", "mentor"}
# (path, roles that may open it) for the pages of accounts.py; {learner} and {other} are the ids
# of the logged-in learner and of another learner.
ACCOUNT_PAGES = [
    ("/group/settings", EVERYONE),
    ("/group/tokens", EVERYONE),
    ("/group/admin/invites", {"admin"}),
]
# The dashboard's pages (group/dashboard.py, g3's); a path not routed on this branch is left out.
PROTECTED_PAGES = [
    ("/group/", EVERYONE),
    ("/group/inactive", STAFF),
    ("/group/labs", EVERYONE),
    ("/group/board", EVERYONE),
    ("/group/learner/{learner}", EVERYONE),
    ("/group/learner/{other}", STAFF),  # a learner cannot open another learner's page
]
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch):
    """The library's default argon2 costs about a second of CPU per login on this machine; the
    tests check who may log in, not the cost, so they hash with the smallest sane one."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


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
def routed(app, path: str, method: str = "GET") -> bool:
    from werkzeug.exceptions import MethodNotAllowed, NotFound

    try:
        app.url_map.bind("localhost").match(path, method=method)
        return True
    except (NotFound, MethodNotAllowed):
        return False


@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_page(app, people, role):
    client = logged_in(app, role)
    pages = [(path.format(**people), allowed) for path, allowed in ACCOUNT_PAGES + PROTECTED_PAGES]
    assert [p for p, _ in pages if not routed(app, p)] == []  # every listed page exists
    for path, allowed in pages:
        resp = client.get(path)
        if role == "anonymous":
            assert resp.status_code == 302 and "/group/login?next=" in resp.headers["Location"], path
        elif role in allowed:
            assert resp.status_code == 200, path
        else:  # 404 where a page says "no such learner" rather than that one exists
            assert resp.status_code in (403, 404), path
            assert "Other" not in resp.get_data(as_text=True), path


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


@pytest.mark.parametrize("base,secure", [("http://127.0.0.1:8600", False), ("http://[::1]", False),
                                         ("http://localhost", False), ("http://[2001:db8::1]:8600", True),
                                         ("https://127.0.0.1", True), ("http://10.0.0.5:8600", True)])
def test_which_cookies_are_secure(app, base, secure):
    resp = app.test_client().get("/group/login", base_url=base)
    assert ("Secure" in resp.headers["Set-Cookie"]) == secure


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
    saved = client.post("/group/settings", data={"share_notes": "on", "csrf_token": csrf_of(client, "/group/settings")})
    assert saved.status_code == 200
    assert re.search(r'name="share_notes"\s+checked', saved.get_data(as_text=True))  # the page shows what was stored
    assert not re.search(r'name="on_board"\s+checked', saved.get_data(as_text=True))
    assert rows(pg_url, "SELECT share_notes, on_board FROM account WHERE id = %s",
                people["learner"]) == [{"share_notes": True, "on_board": False}]


def test_security_headers(app):
    resp = app.test_client().get("/group/login")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in resp.headers["Cache-Control"]
    assert "http" not in re.sub(r'href="/', "", resp.get_data(as_text=True)).split("<main>")[0]


def test_next_never_leaves_the_site(app, people):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        client = app.test_client()
        resp = client.post("/group/login", data={"email": "learner@example.org", "password": PASSWORD,
                                                  "csrf_token": csrf_of(client), "next": target})
        assert resp.headers["Location"] == "/group/", target


def test_expired_sessions_and_disabled_accounts_are_logged_out(app, people, pg_url):
    client = logged_in(app, "learner")
    token = token_for(app, "learner@example.org")
    with db.connect(pg_url) as conn:
        conn.execute("UPDATE web_session SET expires_at = now() - interval '1 second'")
    assert client.get("/group/settings").status_code == 302
    client = logged_in(app, "learner")
    with db.connect(pg_url) as conn:
        conn.execute("UPDATE account SET disabled = true WHERE id = %s", (people["learner"],))
    assert client.get("/group/settings").status_code == 302
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 401


# -- the role helpers g3's pages use --------------------------------------------------------------
def test_can_see_learner_and_notes():
    admin, mentor = {"id": 1, "role": "admin"}, {"id": 2, "role": "mentor"}
    me = {"id": 3, "role": "learner", "share_notes": False}
    other = {"id": 4, "role": "learner", "share_notes": False}
    sharing = {"id": 5, "role": "learner", "share_notes": True}
    assert auth.can_see_learner(me, 3) and auth.can_see_learner(me, "3")
    assert not auth.can_see_learner(me, 4) and not auth.can_see_learner(me, "x")
    assert not auth.can_see_learner(None, 3)
    assert auth.can_see_learner(mentor, 4) and auth.can_see_learner(admin, 4)
    assert auth.can_see_notes(me, me) and not auth.can_see_notes(me, other)
    assert not auth.can_see_notes(me, sharing)  # sharing is with mentors, not with other learners
    assert not auth.can_see_notes(mentor, other) and not auth.can_see_notes(admin, other)
    assert auth.can_see_notes(mentor, sharing) and auth.can_see_notes(admin, sharing)
    assert not auth.can_see_notes(None, sharing)


# -- the API by role ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_the_token_api(app, people, pg_url, role):
    client = app.test_client()
    if role == "anonymous":
        for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/tokens"), ("DELETE", "/api/v1/tokens/1")):
            resp = client.open(path, method=method)
            assert resp.status_code == 401 and resp.get_json()["error"]["code"] == 401
            assert client.open(path, method=method, headers=bearer("z2v_made-up")).status_code == 401
        return
    token = token_for(app, f"{role}@example.org")
    me = client.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.get_json() == {"id": people[role], "email": f"{role}@example.org", "name": role.title(),
                             "role": role, "share_notes": False, "on_board": False}
    listed = client.get("/api/v1/tokens", headers=bearer(token)).get_json()["tokens"]
    assert [(t["name"], t["current"]) for t in listed] == [("laptop", True)]
    assert client.delete(f"/api/v1/tokens/{listed[0]['id']}", headers=bearer(token)).get_json() == \
        {"revoked": listed[0]["id"]}
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401  # revoked: refused
    assert rows(pg_url, "SELECT revoked_at IS NOT NULL AS r FROM api_token") == [{"r": True}]


SYNC_ENDPOINTS = [("POST", "/api/v1/sync/push"), ("GET", "/api/v1/sync/pull")]


@pytest.mark.parametrize("method,path", SYNC_ENDPOINTS)
def test_sync_endpoints_refuse_missing_and_revoked_tokens(app, people, pg_url, method, path):
    assert routed(app, path, method), f"{method} {path} is not routed"
    client = app.test_client()
    assert client.open(path, method=method, json={}).status_code == 401
    token = token_for(app, "learner@example.org")
    with db.connect(pg_url) as conn:
        conn.execute("UPDATE api_token SET revoked_at = now()")
    resp = client.open(path, method=method, json={"device": "0" * 32, "changes": []}, headers=bearer(token))
    assert resp.status_code == 401 and "revoked" in resp.get_json()["error"]["message"]


def test_a_learner_cannot_touch_another_learners_tokens(app, people, pg_url):
    mine, theirs = token_for(app, "learner@example.org"), token_for(app, "other@example.org")
    their_id = rows(pg_url, "SELECT id FROM api_token WHERE account_id = %s", people["other"])[0]["id"]
    client = app.test_client()
    listed = client.get("/api/v1/tokens", headers=bearer(mine)).get_json()["tokens"]
    assert their_id not in [t["id"] for t in listed]
    resp = client.delete(f"/api/v1/tokens/{their_id}", headers=bearer(mine))
    assert resp.status_code == 404
    page = logged_in(app, "learner")
    assert their_id and "laptop" in page.get("/group/tokens").get_data(as_text=True)
    resp = page.post(f"/group/tokens/{their_id}/revoke", data={"csrf_token": csrf_of(page, "/group/tokens")})
    assert resp.status_code == 404
    assert rows(pg_url, "SELECT revoked_at FROM api_token WHERE id = %s", their_id) == [{"revoked_at": None}]
    assert client.get("/api/v1/me", headers=bearer(theirs)).get_json()["id"] == people["other"]


def test_revoking_from_the_tokens_page(app, people, pg_url):
    token = token_for(app, "learner@example.org")
    token_id = rows(pg_url, "SELECT id FROM api_token")[0]["id"]
    page = logged_in(app, "learner")
    resp = page.post(f"/group/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page, "/group/tokens")})
    assert resp.status_code == 303
    assert "revoked" in page.get("/group/tokens").get_data(as_text=True)
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_secrets_are_stored_hashed(app, people, pg_url):
    token = token_for(app, "learner@example.org")
    with db.connect(pg_url) as conn:
        invite = invites.create(conn, "learner")
        dump = " ".join(str(r) for table in ("account", "api_token", "invite", "web_session", "login_attempt")
                        for r in conn.execute(f"SELECT row_to_json(t)::text AS r FROM {table} t").fetchall())
        hashes = [r["password_hash"] for r in conn.execute("SELECT password_hash FROM account")]
    assert token not in dump and invite not in dump and PASSWORD not in dump
    assert auth.token_hash(token) in dump and auth.token_hash(invite) in dump
    assert len(hashes) == 4 and all(h.startswith("$argon2id$") for h in hashes)


# -- invites --------------------------------------------------------------------------------------
def make_invite(pg_url, role="learner", **kw) -> str:
    with db.connect(pg_url) as conn:
        return invites.create(conn, role, **kw)


def join(client, token, **form):
    page = client.get(f"/group/join?invite={token}")
    return client.post("/group/join", data={"invite": token, "csrf_token": CSRF_RE.search(
        page.get_data(as_text=True)).group(1) if page.status_code == 200 else csrf_of(client), **form})


def test_an_invite_makes_one_account_once(app, pg_url):
    token = make_invite(pg_url, "mentor", email="New@Example.org")
    client = app.test_client()
    page = client.get(f"/group/join?invite={token}")
    assert page.status_code == 200 and "mentor" in page.get_data(as_text=True)
    resp = join(client, token, name="New Mentor", password=PASSWORD)
    assert resp.status_code == 303
    assert client.get("/group/settings").status_code == 200  # logged in as the new account
    account = rows(pg_url, "SELECT id, email, role, name FROM account")
    assert [(a["email"], a["role"], a["name"]) for a in account] == [("new@example.org", "mentor", "New Mentor")]
    assert rows(pg_url, "SELECT used_by FROM invite") == [{"used_by": account[0]["id"]}]
    again = join(app.test_client(), token, email="else@example.org", name="Else", password=PASSWORD)
    assert again.status_code == 410 and "used already" in again.get_data(as_text=True)
    api = app.test_client().post("/api/v1/tokens", json={"invite": token, "email": "else@example.org",
                                                         "name": "Else", "password": PASSWORD})
    assert api.status_code == 400 and "used already" in api.get_json()["error"]["message"]
    assert len(rows(pg_url, "SELECT id FROM account")) == 1


def test_an_expired_invite_is_refused(app, pg_url):
    token = make_invite(pg_url)
    with db.connect(pg_url) as conn:
        conn.execute("UPDATE invite SET expires_at = now() - interval '1 minute'")
    client = app.test_client()
    page = client.get(f"/group/join?invite={token}")
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    assert join(client, token, email="x@example.org", name="X", password=PASSWORD).status_code == 410
    api = client.post("/api/v1/tokens", json={"invite": token, "email": "x@example.org", "name": "X",
                                              "password": PASSWORD})
    assert api.status_code == 400 and "expired" in api.get_json()["error"]["message"]
    assert rows(pg_url, "SELECT id FROM account") == []
    assert rows(pg_url, "SELECT used_at FROM invite") == [{"used_at": None}]


def test_invite_refusals_name_the_problem_and_store_nothing(app, pg_url):
    bound = make_invite(pg_url, email="only@example.org")
    client = app.test_client()
    api = client.post("/api/v1/tokens", json={"invite": bound, "email": "other@example.org",
                                              "name": "O", "password": PASSWORD})
    assert api.status_code == 400 and "another email" in api.get_json()["error"]["message"]
    short = client.post("/api/v1/tokens", json={"invite": bound, "email": "only@example.org",
                                                "name": "O", "password": "short"})
    assert short.status_code == 400 and "at least 8" in short.get_json()["error"]["message"]
    unknown = client.post("/api/v1/tokens", json={"invite": "z2vinv_nope", "email": "a@example.org",
                                                  "name": "A", "password": PASSWORD})
    assert unknown.status_code == 400 and "unknown" in unknown.get_json()["error"]["message"]
    assert rows(pg_url, "SELECT id FROM account") == [] and rows(pg_url, "SELECT id FROM api_token") == []
    ok = client.post("/api/v1/tokens", json={"invite": bound, "email": "only@example.org", "name": "Only",
                                             "password": PASSWORD, "token_name": "gpu box"})
    assert ok.status_code == 201
    body = ok.get_json()
    assert body["learner"]["role"] == "learner" and body["learner"]["email"] == "only@example.org"
    assert rows(pg_url, "SELECT name, token_hash FROM api_token") == [
        {"name": "gpu box", "token_hash": auth.token_hash(body["token"])}]


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_make_invites(app, people, pg_url, role):
    client = logged_in(app, role)
    token = csrf_of(client, "/group/admin/invites") if role == "admin" else csrf_of(client, "/group/login")
    resp = client.post("/group/admin/invites", data={"role": "mentor", "email": "", "days": "3",
                                                     "csrf_token": token})
    made = rows(pg_url, "SELECT role, created_by, expires_at - created_at AS valid FROM invite")
    if role == "admin":
        assert resp.status_code == 200 and "/group/join?invite=z2vinv_" in resp.get_data(as_text=True)
        assert [(m["role"], m["created_by"], m["valid"].days) for m in made] == [("mentor", people["admin"], 3)]
    else:
        assert resp.status_code in (302, 403) and made == []


def test_a_bad_invite_form_is_a_400(app, people, pg_url):
    client = logged_in(app, "admin")
    for data in ({"role": "boss", "days": "3"}, {"role": "learner", "days": "x"},
                 {"role": "learner", "days": "900"}, {"role": "learner", "days": "3", "email": "nope"}):
        resp = client.post("/group/admin/invites", data={**data, "csrf_token": csrf_of(client, "/group/admin/invites")})
        assert resp.status_code == 400, data
    assert rows(pg_url, "SELECT id FROM invite") == []


# -- login rate limits ------------------------------------------------------------------------------
def test_five_failures_lock_an_email_out_with_retry_after(app, people, pg_url):
    client = app.test_client()
    for _ in range(sessions.MAX_FAILS_EMAIL):
        assert client.post("/api/v1/tokens", json={"email": "learner@example.org",
                                                   "password": "wrong-password"}).status_code == 401
    right = client.post("/api/v1/tokens", json={"email": "learner@example.org", "password": PASSWORD})
    assert right.status_code == 429 and 1 <= int(right.headers["Retry-After"]) <= sessions.WINDOW_S + 1
    page = client.post("/group/login", data={"email": "learner@example.org", "password": PASSWORD,
                                              "csrf_token": csrf_of(client)})
    assert page.status_code == 429 and page.headers["Retry-After"]
    assert rows(pg_url, "SELECT id FROM api_token") == [] and rows(pg_url, "SELECT id_hash FROM web_session") == []
    assert len(rows(pg_url, "SELECT id FROM login_attempt WHERE NOT ok")) == sessions.MAX_FAILS_EMAIL
    # another email is not locked by these; and the lock ends with the window
    assert client.post("/api/v1/tokens", json={"email": "mentor@example.org", "password": PASSWORD}).status_code == 201
    with db.connect(pg_url) as conn:
        conn.execute("UPDATE login_attempt SET at = at - make_interval(secs => %s)", (sessions.WINDOW_S + 1,))
        conn.execute("UPDATE login_attempt SET at = at - interval '2 days' WHERE email = 'mentor@example.org'")
    assert client.post("/api/v1/tokens", json={"email": "learner@example.org", "password": PASSWORD}).status_code == 201
    # attempts older than a day are dropped when the next one is recorded
    assert rows(pg_url, "SELECT email FROM login_attempt WHERE email = 'mentor@example.org'") == []


def test_one_address_trying_many_emails_is_locked_out(app, people, pg_url, monkeypatch):
    monkeypatch.setattr(sessions, "MAX_FAILS_REMOTE", 3)  # the same rule, fewer argon2 hashes
    client = app.test_client()
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    for i in range(3):
        assert client.post("/api/v1/tokens", json={"email": f"guess{i}@example.org", "password": "x" * 8},
                           environ_base=attacker).status_code == 401
    assert client.post("/api/v1/tokens", json={"email": "admin@example.org", "password": PASSWORD},
                       environ_base=attacker).status_code == 429
    assert client.post("/api/v1/tokens", json={"email": "admin@example.org", "password": PASSWORD},
                       environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 201


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'"x"', b"null", b'{"email": 5, "password": "x"}',
    b'{"email": "a@example.org"}', b'{"email": "a@example.org", "password": ["x"]}',
    b'{"email": "learner@example.org", "password": "correct horse battery", "name": 7}',
    b'{"invite": 7, "email": "a@example.org", "password": "12345678", "name": "A"}',
    b'{"invite": "z2vinv_x", "email": "a@example.org", "password": "12345678"}',
    b'{"email": "\\ud800@example.org", "password": "12345678"}',
    b'{"invite": "z2vinv_x", "email": "a@example.org", "password": "12345678", "name": "A", "token_name": {}}',
])
def test_bad_json_is_a_4xx_json_answer(app, people, pg_url, body):
    resp = app.test_client().post("/api/v1/tokens", data=body, content_type="application/json")
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == resp.status_code
    assert rows(pg_url, "SELECT id FROM api_token") == []


def test_huge_bodies_and_bad_paths_are_4xx_json(app, people):
    client = app.test_client()
    huge = client.post("/api/v1/tokens", data=b"{" + b" " * (9 * 1024 * 1024) + b"}",
                       content_type="application/json")
    assert huge.status_code == 413 and huge.get_json()["error"]["code"] == 413
    token = token_for(app, "learner@example.org")
    for method, path in (("DELETE", "/api/v1/tokens/abc"), ("DELETE", "/api/v1/tokens/99999999999999999999"),
                         ("PUT", "/api/v1/me"), ("GET", "/api/v1/nothing")):
        resp = client.open(path, method=method, headers=bearer(token))
        assert resp.status_code in (404, 405) and resp.get_json()["error"], (method, path)
    form = logged_in(app, "learner").post("/group/login", data=b"x" * (9 * 1024 * 1024),
                                          content_type="application/x-www-form-urlencoded")
    assert form.status_code in (403, 413)


# -- z2v group-admin and z2v serve group ---------------------------------------------------------------
def z2v(*args, input=None):
    from click.testing import CliRunner

    from zero2vllm.cli import main

    return CliRunner().invoke(main, list(args), input=input)


def test_group_admin_create_admin_stores_an_argon2_admin(pg_url):
    result = z2v("group-admin", "create-admin", "--db", pg_url, "--email", "Boss@Example.org",
                 "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    stored = rows(pg_url, "SELECT email, name, role, password_hash FROM account")
    assert [(a["email"], a["name"], a["role"]) for a in stored] == [("boss@example.org", "Boss", "admin")]
    assert stored[0]["password_hash"].startswith("$argon2id$")
    assert auth.verify_password(stored[0]["password_hash"], PASSWORD)
    again = z2v("group-admin", "create-admin", "--db", pg_url, "--email", "boss@example.org",
                "--password-stdin", input=PASSWORD + "\n")
    assert again.exit_code == 2 and "exists already" in again.output
    short = z2v("group-admin", "create-admin", "--db", pg_url, "--email", "b2@example.org",
                "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 8" in short.output
    assert len(rows(pg_url, "SELECT id FROM account")) == 1


def test_group_admin_invite_stores_only_the_hash_of_what_it_prints(app, pg_url):
    result = z2v("group-admin", "invite", "--db", pg_url, "--role", "mentor", "--email", "M@example.org",
                 "--days", "3", "--url", "https://group.example.org/")
    assert result.exit_code == 0, result.output
    token = re.search(r"z2vinv_[\w-]+", result.output).group(0)
    assert f"https://group.example.org/group/join?invite={token}" in result.output
    stored = rows(pg_url, "SELECT token_hash, role, email, used_at, expires_at - created_at AS valid FROM invite")
    assert [(i["token_hash"], i["role"], i["email"], i["used_at"], i["valid"].days) for i in stored] == \
        [(auth.token_hash(token), "mentor", "m@example.org", None, 3)]
    page = app.test_client().get(f"/group/join?invite={token}")  # and the server takes it
    assert page.status_code == 200 and "m@example.org" in page.get_data(as_text=True)


@pytest.mark.parametrize("args", [
    ("group-admin", "invite", "--db", "sqlite:///x.db"),
    ("group-admin", "invite", "--db", "postgresql://nobody@127.0.0.1:1/none"),
    ("group-admin", "create-admin", "--db", "mysql://x", "--email", "a@example.org", "--password-stdin"),
    ("serve", "group", "--db", "postgresql://nobody@127.0.0.1:1/none"),
    ("serve", "group", "--db", "nonsense"),
])
def test_a_bad_db_is_one_line_exit_2(args, monkeypatch):
    monkeypatch.delenv("ZERO2VLLM_GROUP_DB", raising=False)
    result = z2v(*args, input=PASSWORD + "\n")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("Error: ")


def test_no_db_at_all_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("ZERO2VLLM_GROUP_DB", raising=False)
    result = z2v("group-admin", "invite")
    assert result.exit_code == 2 and "--db postgresql://" in result.output


def test_the_secret_file_is_made_0600_and_kept(tmp_path):
    from zero2vllm.group import server

    path = tmp_path / "sub" / "secret"
    first = server.load_secret(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(first) == 64
    assert server.load_secret(path) == first  # a restart signs with the same key
    path.chmod(0o644)
    with pytest.raises(server.SecretError, match="chmod 600"):
        server.load_secret(path)
    path.write_text("short")
    path.chmod(0o600)
    with pytest.raises(server.SecretError, match="fewer than 32"):
        server.load_secret(path)


def test_the_real_server_keeps_sessions_across_a_restart(pg_url, tmp_path):
    """`z2v serve group` as its own process: log in, restart it, still logged in."""
    import http.client
    import os
    import subprocess
    import sys

    with db.connect(pg_url) as conn:
        db.migrate(conn)
        auth.create_account(conn, "learner@example.org", "L", "learner", PASSWORD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "serve", "group", "--db", pg_url,
                                 "--port", "0", "--secret-file", str(tmp_path / "secret"), "--threads", "2"],
                                env=env, stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))
        return proc, port

    def get(port, method, path, body=None, cookie=""):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=body, headers={"Cookie": cookie, **(
            {"Content-Type": "application/x-www-form-urlencoded"} if body else {})})
        resp = conn.getresponse()
        return resp, resp.read().decode()

    from urllib.parse import urlencode

    proc, port = start()
    try:
        resp, html = get(port, "GET", "/group/login")
        pre = resp.getheader("Set-Cookie").split(";")[0]
        csrf = CSRF_RE.search(html).group(1)
        resp, _ = get(port, "POST", "/group/login", urlencode(
            {"email": "learner@example.org", "password": PASSWORD, "csrf_token": csrf}), cookie=pre)
        assert resp.status == 303
        session = [c.split(";")[0] for c in resp.headers.get_all("Set-Cookie") if c.startswith("z2v_group_session")][0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, port = start()
    try:
        resp, html = get(port, "GET", "/group/settings", cookie=session)
        assert resp.status == 200 and "learner@example.org" in html
        assert resp.getheader("Server") == "zero2vllm-group"  # waitress, named
        # the same secret file: a form fetched before the restart is still accepted (401, not 403)
        resp, _ = get(port, "POST", "/group/login", urlencode(
            {"email": "learner@example.org", "password": "wrong-password", "csrf_token": csrf}), cookie=pre)
        assert resp.status == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_group_admin_set_password_and_disable(app, people, pg_url):
    client = logged_in(app, "learner")
    token = token_for(app, "learner@example.org")
    new = "a brand new password"
    result = z2v("group-admin", "set-password", "--db", pg_url, "--email", "LEARNER@example.org",
                 "--password-stdin", input=new + "\n")
    assert result.exit_code == 0, result.output
    stored = rows(pg_url, "SELECT password_hash FROM account WHERE id = %s", people["learner"])[0]["password_hash"]
    assert stored.startswith("$argon2id$") and auth.verify_password(stored, new)
    assert client.get("/group/settings").status_code == 302  # its sessions ended
    assert app.test_client().post("/api/v1/tokens", json={"email": "learner@example.org",
                                                          "password": new}).status_code == 201
    assert z2v("group-admin", "disable", "--db", pg_url, "--email", "learner@example.org").exit_code == 0
    assert rows(pg_url, "SELECT disabled FROM account WHERE id = %s", people["learner"]) == [{"disabled": True}]
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert app.test_client().post("/api/v1/tokens", json={"email": "learner@example.org",
                                                          "password": new}).status_code == 401
    assert z2v("group-admin", "disable", "--db", pg_url, "--email", "learner@example.org", "--enable").exit_code == 0
    assert app.test_client().get("/api/v1/me", headers=bearer(token)).status_code == 200
    missing = z2v("group-admin", "disable", "--db", pg_url, "--email", "nobody@example.org")
    assert missing.exit_code == 2 and "no account" in missing.output


def test_times_on_pages_are_utc_whatever_the_session_zone():
    from datetime import datetime, timedelta, timezone

    from zero2vllm.group.accounts import utc

    assert utc(datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-01 03:30 UTC"
    assert utc(None) == ""
