"""Start real `vllm serve` from its venv, wait until it is healthy, and stop it with nothing left behind.

    server = VllmServer(ServeConfig(model="smollm2", port=8001, eager=True))
    server.start()            # checks first: installed? port free? model folder there?
    server.wait_ready(900)    # polls /health; if vLLM dies, raises with the tail of its log
    ...                       # http://127.0.0.1:8001/v1/completions
    server.stop()             # SIGTERM to its whole process group, SIGKILL after a grace period

What this 2-core CPU machine needs, and why:
  - VLLM_CPU_OMP_THREADS_BIND=0-1: vLLM's default ("auto") leaves one core for the frontend,
    which on two cores halves the compute; bind OpenMP to every core we may run on.
  - VLLM_CPU_KVCACHE_SPACE (GiB): the RAM vLLM pre-allocates for KV blocks (2 GiB holds
    ~46,000 SmolLM2 tokens in fp32 at 46,080 bytes each).
  - --dtype float32: no bf16 hardware here; SmolLM2's safetensors copy is fp32 anyway.
  - the model as a safetensors folder: vLLM does not load GGUF on x86 CPU, so the embedded
    model is the converted copy that zero2vllm.models shares with the naive API.
  - --enforce-eager (`eager=True`) skips torch.compile: healthy in ~50 s instead of ~150 s,
    at about 60% of the compiled throughput.

vLLM runs in its own session (process group) so the terminal's Ctrl-C reaches only z2v, which
then stops vLLM in order; if z2v itself is killed, the kernel sends vLLM SIGTERM (PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from zero2vllm.realvllm import env as vllm_env

SMOLLM2_SERVED_NAME = "smollm2"


class ServeError(Exception):
    """vLLM cannot be started or died; the message says why and what to do."""


@dataclass
class ServeConfig:
    model: str = "smollm2"  # smollm2 | a Hugging Face model folder | a cached HF id
    host: str = "127.0.0.1"
    port: int = 8001
    eager: bool = False
    kv_cache_gib: int = 2
    max_model_len: int = 2048
    dtype: str = "float32"
    extra_args: list[str] = field(default_factory=list)


def state_path() -> Path:
    from zero2vllm.paths import data_dir

    return data_dir() / "vllm" / "server.json"


def read_state() -> dict | None:
    """The server `z2v vllm serve` last started (url, pid, log), if that process is still alive."""
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cpu_bind() -> str:
    """The cores we may run on, as VLLM_CPU_OMP_THREADS_BIND wants them: "0-1" or "0,2,5"."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = list(range(os.cpu_count() or 1))
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}" if len(cores) > 1 else str(cores[0])
    return ",".join(map(str, cores))


def port_problem(host: str, port: int) -> str | None:
    """None when we can listen on host:port, else why not (and who holds it, when we can tell)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
        try:
            s.bind((host, port))
            return None
        except OSError as exc:
            reason = exc.strerror or str(exc)
    owner = _port_owner(port)
    what = f"port {port} on {host} is in use ({reason}{', by ' + owner if owner else ''})"
    if _get_json(f"http://{host}:{port}/v1/models", timeout=2) is not None:
        what += "; an OpenAI-compatible server (vLLM?) already answers there: use it with " \
                f"`z2v compare --vllm http://{host}:{port}`, or stop it"
    return what + f"; stop that process or pick another port: --port {port + 1}"


def _port_owner(port: int) -> str | None:
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} {' '.join(proc.cmdline())[:80]}"
    except Exception:  # psutil missing, or not allowed to see other users' sockets
        return None
    return None


def _get_json(url: str, timeout: float = 2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=3) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def model_folder(spec: str) -> Path:
    """The safetensors folder vLLM loads for --model, or ServeError saying how to get one."""
    from zero2vllm.models import ModelError, ensure_model_dir

    try:
        folder = ensure_model_dir(spec)
    except ModelError as exc:
        raise ServeError(f"model folder missing: {exc}") from None
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not weights:
        if list(folder.glob("*.gguf")):
            raise ServeError(f"{folder} holds only GGUF weights, which vLLM cannot load on x86 CPU; "
                             "use --model smollm2 (converted to safetensors for you) or convert it "
                             "with transformers' save_pretrained")
        raise ServeError(f"{folder} has no *.safetensors weights; give a complete Hugging Face "
                         "model folder, or --model smollm2")
    return folder


def served_name(spec: str, folder: Path) -> str:
    from zero2vllm.models import SMOLLM2

    return SMOLLM2_SERVED_NAME if spec.strip().lower().startswith(SMOLLM2) else folder.name


# What a dying vLLM prints, and what to do about it.
DIAGNOSES = [
    ("operator torchvision::nms does not exist",
     "a CUDA build of torchvision is in vLLM's venv: run `z2v vllm install --force`"),
    ("No package metadata was found for vllm",
     "vLLM was started without zero2vllm's launcher; start it with `z2v vllm serve`"),
    ("address already in use", "the port is taken: pass another --port"),
    ("Cannot allocate memory", "not enough RAM: lower --kv-cache-gib or --max-model-len"),
    ("out of memory", "not enough RAM: lower --kv-cache-gib or --max-model-len"),
    ("larger than the maximum number of tokens that can be stored in KV cache",
     "the KV cache is too small for --max-model-len: raise --kv-cache-gib or lower --max-model-len"),
    ("GGUF", "vLLM on CPU needs safetensors weights: use --model smollm2"),
    ("bfloat16", "this CPU has no bf16 support: keep the default --dtype float32"),
]


def diagnose(log_tail: str) -> list[str]:
    low = log_tail.lower()
    return [fix for needle, fix in DIAGNOSES if needle.lower() in low]


def _set_pdeathsig() -> None:
    """In the child before exec: get SIGTERM if the process that started us dies (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class VllmServer:
    """One `vllm serve` process (and its workers), started from the vLLM venv."""

    def __init__(self, cfg: ServeConfig, *, echo: Callable[[str], None] = print,
                 show_log: bool = False, venv: Path | None = None):
        self.cfg, self.echo, self.show_log = cfg, echo, show_log
        self.venv = venv or vllm_env.venv_dir()
        self.url = f"http://{cfg.host}:{cfg.port}"
        self.proc: subprocess.Popen | None = None
        self.served_name = ""
        self.started_at = 0.0
        self.ready_s: float | None = None
        from zero2vllm.paths import data_dir

        self.log_path = data_dir() / "logs" / f"vllm-serve-{cfg.port}.log"
        self._stop_tail = threading.Event()

    # -- start ------------------------------------------------------------------------------
    def preflight(self) -> Path:
        """Every check that can fail before vLLM starts; returns the model folder."""
        if not vllm_env.is_installed(self.venv):
            raise ServeError(f"vLLM is not installed (no vLLM environment at {self.venv}); "
                             "run `z2v vllm install` first (about 3 minutes, 2.5 GB)")
        problem = port_problem(self.cfg.host, self.cfg.port)
        if problem:
            raise ServeError(problem)
        return model_folder(self.cfg.model)

    def command(self, folder: Path) -> list[str]:
        from zero2vllm.realvllm import launch as vllm_launch

        cmd = [str(vllm_env.venv_python(self.venv)), vllm_launch.__file__, "serve", str(folder),
               "--host", self.cfg.host, "--port", str(self.cfg.port),
               "--dtype", self.cfg.dtype, "--max-model-len", str(self.cfg.max_model_len),
               "--served-model-name", self.served_name]
        if self.cfg.eager:
            cmd.append("--enforce-eager")
        return cmd + list(self.cfg.extra_args)

    def env(self) -> dict:
        env = vllm_env.launch_env()
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_bind())
        env["VLLM_CPU_KVCACHE_SPACE"] = str(int(self.cfg.kv_cache_gib))
        # zero2vllm never reaches the network at run time: no usage stats, no hub look-ups.
        env.update(VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        return env

    def start(self) -> None:
        folder = self.preflight()
        self.served_name = served_name(self.cfg.model, folder)
        cmd = self.command(folder)
        env = self.env()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.echo(f"starting vLLM ({'eager' if self.cfg.eager else 'compiled: ~2-3 min on 2 cores'})"
                  f" with {folder} on {self.url}; OpenMP bound to cores "
                  f"{env['VLLM_CPU_OMP_THREADS_BIND']}, KV cache {env['VLLM_CPU_KVCACHE_SPACE']} GiB")
        self.echo(f"log: {self.log_path}")
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            # Our own session: the terminal's Ctrl-C goes to z2v only, which then stops vLLM's
            # whole group in order. (Start it from the main thread: PDEATHSIG follows the thread.)
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=str(self.log_path.parent),
                                         start_new_session=True, preexec_fn=_set_pdeathsig)
        self.started_at = time.perf_counter()
        path = state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "url": self.url, "pid": self.proc.pid, "port": self.cfg.port, "model": str(folder),
            "served_model_name": self.served_name, "eager": self.cfg.eager, "log": str(self.log_path),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }, indent=2) + "\n")
        if self.show_log:
            threading.Thread(target=self._tail_log, daemon=True).start()

    def _tail_log(self) -> None:
        with open(self.log_path, "r", encoding="utf-8", errors="replace") as f:
            f.readline()  # our own "$ command" line
            while not self._stop_tail.is_set():
                line = f.readline()
                if line:
                    self.echo("  vllm | " + line.rstrip())
                else:
                    time.sleep(0.2)

    def wait_ready(self, timeout_s: float = 900.0, poll_s: float = 0.5) -> float:
        """Block until /health answers 200; returns the seconds it took. On death or timeout,
        stop everything and raise ServeError with the log's tail and the likely fix."""
        assert self.proc is not None, "start() first"
        last_note = time.perf_counter()
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise ServeError(self._death_message(f"vLLM exited with code {code} during start-up"))
            if _health(self.url):
                self.ready_s = time.perf_counter() - self.started_at
                return self.ready_s
            waited = time.perf_counter() - self.started_at
            if waited > timeout_s:
                self.stop()
                raise ServeError(self._death_message(
                    f"vLLM was not healthy after {timeout_s:.0f} s (raise --timeout if it was still "
                    "loading)"))
            if not self.show_log and time.perf_counter() - last_note > 20:
                self.echo(f"  still starting ({waited:.0f} s)... {self._last_log_line()[:100]}")
                last_note = time.perf_counter()
            time.sleep(poll_s)

    def _death_message(self, what: str) -> str:
        tail = self.log_tail(25)
        fixes = diagnose(tail)
        msg = f"{what}. Last lines of {self.log_path}:\n{tail}"
        if fixes:
            msg += "\nlikely fix: " + "; ".join(fixes)
        return msg

    def log_tail(self, lines: int = 25) -> str:
        try:
            data = self.log_path.read_bytes()[-20000:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        kept = [ln for ln in data.splitlines() if ln.strip()][-lines:]
        return "\n".join("    " + ln for ln in kept)

    def _last_log_line(self) -> str:
        tail = self.log_tail(1).strip()
        return tail.split(" ", 4)[-1] if tail else ""

    # -- run and stop -----------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to vLLM's process group, SIGKILL to whatever is left after `grace_s`."""
        self._stop_tail.set()
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is vLLM's pid
        if proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                proc.wait(timeout=10)
        # vLLM's workers share its group; any that outlived it go too.
        deadline = time.monotonic() + 5
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        try:
            if json.loads(state_path().read_text()).get("pid") == proc.pid:
                state_path().unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "VllmServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
