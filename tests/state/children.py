"""Run child processes that start together: each prints ``ready``, waits for ``go`` on stdin, then races."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def run_released_together(commands: Sequence[Sequence[str]], env: dict[str, str], *, timeout: float) -> list[str]:
    """Start one Python child per argument list, release them at once, and return each one's stdout.

    Fails the test when a child dies before ``ready`` or exits non-zero (its stderr in the message).
    """
    children = [
        subprocess.Popen(
            [sys.executable, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for command in commands
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=timeout) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    return [out for out, _ in outputs]
