"""Run the real ``gateway`` CLI from tests, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def gateway(
    *args: str, env: dict[str, str] | None = None, check: bool = True, cwd: Path = PROJECT
) -> subprocess.CompletedProcess[str]:
    """``python -m gateway ARGS`` without the caller's GATEWAY_* variables, JSON logs on stderr;
    from ``cwd`` (default: the project, which the package is importable from)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gateway {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result
