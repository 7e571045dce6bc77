"""The dashboard serves only what it should: artifacts never as script in its origin and never
the store, redirects only to its own paths, and a Host check that holds for [::1] and for a
server bound to all interfaces."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys

import pytest

from web_helpers import token_of

NOW = "2026-12-02T10:30:00"


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


def _run_with(files: list) -> int:
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    store = Store.open(db_path())
    try:
        return store.add_lab_run("transformer", True, kind="run", artifacts=[str(f) for f in files])
    finally:
        store.close()


def test_html_and_script_artifacts_never_run_in_the_dashboard_origin(client, home):
    out = home / "labs" / "transformer"
    out.mkdir(parents=True)
    (out / "report.html").write_text('<script src="evil.js"></script><p>hi</p>')
    (out / "evil.js").write_text("fetch('/undo', {method: 'POST'})")
    (out / "loss.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    (out / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    run = _run_with([out / "report.html", out / "evil.js", out / "loss.svg", out / "loss.png"])
    html = client.get(f"/labs/run/{run}/artifact/0")
    assert html.status_code == 200
    assert html.headers["Content-Disposition"].startswith("attachment")  # a download, not a page
    assert html.mimetype == "application/octet-stream"
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert client.get(f"/labs/run/{run}/artifact/1").status_code == 403  # .js is not a listed type
    svg = client.get(f"/labs/run/{run}/artifact/2")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    csp = svg.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    png = client.get(f"/labs/run/{run}/artifact/3")
    assert png.status_code == 200 and png.headers["X-Content-Type-Options"] == "nosniff"


def test_the_store_is_never_served_even_when_recorded_as_an_artifact(client, home):
    from zero2vllm.paths import db_path

    backup_dir = home / "labs" / "transformer"
    backup_dir.mkdir(parents=True)
    copy = backup_dir / "run.bin"  # a database under a listed type's name
    shutil.copy(db_path(), copy)
    (home / "backups").mkdir()
    (home / "backups" / "notes.txt").write_text("not a lab output")
    run = _run_with([db_path(), f"{db_path()}-wal", copy, home / "backups" / "notes.txt"])
    for index in range(4):
        resp = client.get(f"/labs/run/{run}/artifact/{index}")
        assert resp.status_code in (403, 404), index
        assert b"SQLite format 3" not in resp.get_data()
    assert "not served" in client.get("/labs").get_data(as_text=True)


@pytest.mark.parametrize("evil", ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example/x",
                                  "//evil.example", "/\\evil.example", "https://evil.example/",
                                  " //evil.example", "/%09/x\x00", "javascript:alert(1)"])
def test_undo_never_redirects_off_the_site(client, evil):
    resp = client.post("/undo", data={"csrf_token": token_of(client), "next": evil})
    assert resp.status_code == 302 and resp.headers["Location"] == "/", repr(evil)


def test_undo_still_goes_back_to_a_page_of_the_dashboard(client):
    resp = client.post("/undo", data={"csrf_token": token_of(client), "next": "/week/2?x=1#top"})
    assert resp.headers["Location"] == "/week/2?x=1#top"


def test_host_check_accepts_ipv6_loopback_and_refuses_others(client):
    for host in ("[::1]:8765", "[::1]", "127.0.0.1:8765", "localhost", "LOCALHOST:80"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "[::2]:8765", "127.0.0.1.evil.example", "[::1", "a b", ""):
        assert client.get("/", headers={"Host": host}).status_code == 400, host


def test_allow_list_when_bound_to_all_interfaces(home, z2v):
    from zero2vllm.paths import db_path
    from zero2vllm.web import create_app
    from zero2vllm.web.server import allowed_hosts

    names = allowed_hosts("0.0.0.0", ["mybox.lan"])
    assert "0.0.0.0" not in names and "mybox.lan" in names and "127.0.0.1" in names
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")
    c = create_app(db_path(), trusted_hosts=names).test_client()
    assert c.get("/favicon.ico", headers={"Host": "mybox.lan:8765"}).status_code == 204
    assert c.get("/favicon.ico", headers={"Host": "evil.example"}).status_code == 400  # never off


def _serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, ZERO2VLLM_NOW=NOW)
    proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "serve", "dashboard", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    for _ in range(5):
        line = proc.stdout.readline()
        m = re.search(r"Dashboard on http://(\S+?):(\d+)/", line)
        if m:
            return proc, m.group(2)
    proc.kill()
    raise AssertionError(f"no start line: {line}")


def _status(port: str, address: str, host: str) -> int:
    conn = http.client.HTTPConnection(address, int(port), timeout=20)
    conn.request("GET", "/favicon.ico", headers={"Host": host})
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.slow
def test_real_servers_on_ipv6_loopback_and_all_interfaces(home):
    proc, port = _serve(["--host", "::1"])
    try:
        assert _status(port, "::1", f"[::1]:{port}") == 204
        assert _status(port, "::1", "evil.example") == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, port = _serve(["--host", "0.0.0.0", "--allow-host", "mybox.lan"])
    try:
        assert _status(port, "127.0.0.1", f"127.0.0.1:{port}") == 204
        assert _status(port, "127.0.0.1", f"mybox.lan:{port}") == 204
        assert _status(port, "127.0.0.1", "evil.example") == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
