"""The box a check's child process runs in: what it can see, what it may use, and how it ends.

With bubblewrap (Debian's `bubblewrap`, when it works on this machine) the child sees the whole
filesystem read-only, a throw-away HOME, working directory and TMPDIR, no zero2vllm store (the
data directory is an empty tmpfs, the database file /dev/null), its own PID namespace (every
process it starts dies with it, new sessions included), its own network namespace with only a
loopback, and no capabilities. Without bubblewrap it still gets the throw-away HOME and working
directory, a scrubbed environment, its own session killed as a whole, a death signal, and the
resource limits; the check's output says which of the two was used.
Limits: processes (a pids cgroup where one can be made, else RLIMIT_NPROC), memory (a memory
cgroup, else RLIMIT_AS), file size and CPU time (rlimits).
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

SANDBOX_ENV = "ZERO2VLLM_SANDBOX"  # "none": skip bubblewrap (tests of the fallback, odd machines)
STORE_ENV = ("ZERO2VLLM_DB", "ZERO2VLLM_HOME")  # the child never learns where the store is
RUN_ENV = "ZERO2VLLM_CHECK_RUN"  # marks the check's processes, to find strays without a cgroup
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    processes: int = 1024  # tasks, threads included (torch starts one per core)
    memory_bytes: int = 16 * 2**30
    file_bytes: int = 2 * 2**30
    cpu_s: int = 3600


@functools.lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Whether bubblewrap is installed and can make its namespaces here (containers may forbid)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, *_BWRAP_BASE, "true"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_BWRAP_BASE = ["--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc",
               "--unshare-uts", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev",
               "--proc", "/proc"]
# /tmp stays visible (read-only, like the rest of /): a clone, its venv or vLLM's venv may live
# there; the check writes to its own TMPDIR inside the throw-away root.


class Sandbox:
    """Use as a context manager: `command()`, `env()`, `cwd` and `preexec` go to Popen; leaving
    it kills whatever is left and removes the throw-away directory."""

    def __init__(self, learner_path: Path, *, hide: list[Path], writable: list[Path] = (),
                 readable: list[Path] = (), limits: Limits = Limits(), host_network: bool = False):
        self.host_network = host_network  # else its own network namespace: a loopback only
        self.learner_path = Path(learner_path).resolve()
        self.hide = [Path(p).resolve() for p in hide if p]
        self.writable = [Path(p).resolve() for p in writable if p and Path(p).exists()]
        self.readable = [Path(p).resolve() for p in readable if p and Path(p).exists()]
        self.limits = limits
        self.run_id = uuid.uuid4().hex
        self.proc: subprocess.Popen | None = None
        self.root = Path(tempfile.mkdtemp(prefix="z2v-sandbox-"))
        self.home, self.cwd = self.root / "home", self.root / "work"
        self.home.mkdir()
        self.cwd.mkdir()
        self._link_learner_files()
        self.use_bwrap = os.environ.get(SANDBOX_ENV, "auto") != "none" and bwrap_works()
        self.cgroups = _Cgroups.make(limits)
        self._nproc = None if self.cgroups.pids or os.getuid() == 0 else \
            _user_tasks(os.getuid()) + limits.processes

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *_exc) -> None:
        self.kill()  # also when the parent is interrupted (Ctrl-C) mid-check
        self.cgroups.kill_and_remove()
        shutil.rmtree(self.root, ignore_errors=True)

    def started(self, proc: subprocess.Popen) -> None:
        """Call right after Popen: remembers the child, and keeps only the cgroups it really
        joined (a cgroup v2 tree may refuse the move), so `isolation` tells the truth."""
        self.proc = proc
        self.cgroups.keep_joined(proc.pid)

    def _link_learner_files(self) -> None:
        """The working directory shows the learner's files (links to them, read-only under
        bubblewrap), so relative paths in their code still work; what it writes is thrown away."""
        base = self.learner_path if self.learner_path.is_dir() else self.learner_path.parent
        try:
            entries = list(base.iterdir())[:1000]
        except OSError:
            return
        for entry in entries:
            try:
                (self.cwd / entry.name).symlink_to(entry)
            except OSError:
                pass

    @property
    def isolation(self) -> str:
        """One line for the check's output: which isolation this run had."""
        net = "host network" if self.host_network else "own network namespace"
        how = (f"bubblewrap (read-only filesystem, no store, own PID namespace, {net})"
               if self.use_bwrap else "no bubblewrap: own session, scrubbed environment, "
               "throw-away HOME (the store stays readable by path)")
        procs = ("pids cgroup" if self.cgroups.pids else "RLIMIT_NPROC" if self._nproc
                 else "none (running as root without a pids cgroup)")
        mem = "memory cgroup" if self.cgroups.memory else "RLIMIT_AS"
        return f"{how}; process limit: {procs}; memory limit: {mem}"

    def env(self, base: dict) -> dict:
        env = {k: v for k, v in base.items() if k not in STORE_ENV}
        env.update(HOME=str(self.home), TMPDIR=str(self.root / "tmp"), PWD=str(self.cwd))
        env[RUN_ENV] = self.run_id
        (self.root / "tmp").mkdir(exist_ok=True)
        return env

    def command(self, argv: list[str]) -> list[str]:
        if not self.use_bwrap:
            return argv
        args = [shutil.which("bwrap"), *_BWRAP_BASE]
        if self.host_network:
            args.remove("--unshare-net")
        dirs = [p for p in self.hide if p.is_dir()]
        files = [f for p in self.hide if not p.is_dir()
                 for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm"), Path(f"{p}-journal")) if f.exists()]
        for path in dirs:  # the store's directory: empty
            args += ["--tmpfs", str(path)]
        for path in self.writable:  # e.g. the model cache inside it, which a first check may fill
            args += ["--bind", str(path), str(path)]
        # the learner's files read-only at their own path (error messages name them), even
        # when they live inside a hidden directory
        args += ["--ro-bind", str(self.learner_path), str(self.learner_path)]
        for path in self.readable:  # e.g. a lab's own package outside zero2vllm (dev-check's tests)
            args += ["--ro-bind", str(path), str(path)]
        for path in files:  # the database, wherever it is: /dev/null
            args += ["--ro-bind", "/dev/null", str(path)]
        args += ["--bind", str(self.root), str(self.root), "--chdir", str(self.cwd)]
        return args + ["--", *argv]

    def preexec(self) -> None:
        """In the child between fork and exec: own session, death signal, cgroups, rlimits."""
        os.setsid()
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        self.cgroups.add(os.getpid())
        lim = self.limits
        for which, value in ((resource.RLIMIT_FSIZE, lim.file_bytes), (resource.RLIMIT_CPU, lim.cpu_s),
                             (resource.RLIMIT_CORE, 0),
                             (resource.RLIMIT_AS, None if self.cgroups.memory else lim.memory_bytes * 4),
                             (resource.RLIMIT_NPROC, self._nproc)):
            if value is not None:
                _lower(which, value)

    def kill(self) -> None:
        """End the child and everything it started: its session, the cgroup, marked strays."""
        if self.proc is not None:  # the group outlives its leader while members remain
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.cgroups.kill()
        if not self.use_bwrap and not self.cgroups.pids:
            _kill_marked(f"{RUN_ENV}={self.run_id}".encode())


def _lower(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else hard))
    except (ValueError, OSError):
        pass


def _kill_marked(marker: bytes) -> None:
    """Kill every process whose environment carries MARKER: what the check started, in any
    session (a learner's code could scrub its children's environment; bubblewrap's PID
    namespace or a cgroup is what really holds them)."""
    for _ in range(3):  # a process may fork while we look
        found = False
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    with open(f"/proc/{entry.name}/environ", "rb") as f:
                        if marker in f.read().split(b"\0"):
                            os.kill(int(entry.name), signal.SIGKILL)
                            found = True
                except OSError:
                    pass
        if not found:
            return


def _user_tasks(uid: int) -> int:
    """Tasks (threads) this user runs now: RLIMIT_NPROC counts them all, not just the check's."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            pass
    return count


class _Cgroups:
    """A pids (and memory) cgroup of our own under ours, where the machine lets us make one
    (cgroup v1 as root in a container, or a delegated v2 subtree); else nothing."""

    def __init__(self, pids: Path | None, memory: Path | None):
        self.pids, self.memory = pids, memory

    @classmethod
    def make(cls, limits: Limits) -> "_Cgroups":
        name = f"z2v-check-{uuid.uuid4().hex[:12]}"
        own = _own_cgroups()
        pids = _make_group(own, "pids", name, {"pids.max": limits.processes})
        memory = _make_group(own, "memory", name, {"memory.limit_in_bytes": limits.memory_bytes,
                                                   "memory.max": limits.memory_bytes})
        return cls(pids, memory)

    def keep_joined(self, pid: int) -> None:
        if self.pids is not None and pid not in _read_pids(self.pids):
            self._drop("pids")
        if self.memory is not None and pid not in _read_pids(self.memory):
            self._drop("memory")

    def _drop(self, which: str) -> None:
        group = getattr(self, which)
        setattr(self, which, None)
        try:
            group.rmdir()
        except OSError:
            pass

    def groups(self) -> list[Path]:
        return [g for g in (self.pids, self.memory) if g is not None]

    def add(self, pid: int) -> None:
        for group in self.groups():
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass

    def kill(self) -> None:
        for group in self.groups():
            if (group / "cgroup.kill").exists():
                try:
                    (group / "cgroup.kill").write_text("1")
                    continue
                except OSError:
                    pass
            for _ in range(50):  # v1 has no cgroup.kill: kill what is listed until none is left
                pids = _read_pids(group)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def kill_and_remove(self) -> None:
        self.kill()
        for group in self.groups():
            for _ in range(100):
                try:
                    group.rmdir()
                    break
                except OSError:
                    if not group.exists():
                        break
                    os.sched_yield()


def _own_cgroups() -> dict[str, str]:
    own = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in (controllers.split(",") if controllers else ["unified"]):
                own[c] = path
    except (OSError, ValueError):
        pass
    return own


def _make_group(own: dict[str, str], controller: str, name: str, settings: dict) -> Path | None:
    if controller in own:  # cgroup v1: a hierarchy per controller
        base = Path("/sys/fs/cgroup", controller) / own[controller].lstrip("/")
    elif "unified" in own and Path("/sys/fs/cgroup/cgroup.controllers").exists():
        base = Path("/sys/fs/cgroup") / own["unified"].lstrip("/")
        try:
            if controller not in (base / "cgroup.subtree_control").read_text().split():
                return None
        except OSError:
            return None
    else:
        return None
    group = base / name
    try:
        group.mkdir()
    except OSError:
        return None
    written = False
    for key, value in settings.items():
        try:
            (group / key).write_text(str(value))
            written = True
        except OSError:
            pass
    if not written:
        try:
            group.rmdir()
        except OSError:
            pass
        return None
    return group


def _read_pids(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
