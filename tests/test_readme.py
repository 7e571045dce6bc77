"""The README's command reference is generated from --help and must match the CLI."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_up_to_date(home):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin",
                                                               "ZERO2VLLM_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_quick_start_is_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert "scripts/test.sh" in commands[1]
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
