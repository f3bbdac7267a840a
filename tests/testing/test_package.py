"""``motia.testing``: every public name importable from the package, loaded on first use, so that the pytest
plugin (loaded by every pytest run where pymotia is installed) adds nothing to a run that uses no fixture."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import motia.testing


def test_every_public_name_resolves_and_is_listed():
    assert motia.testing.__all__ == sorted(motia.testing.__all__)
    for name in motia.testing.__all__:
        assert getattr(motia.testing, name) is not None
        assert name in dir(motia.testing)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        motia.testing.nope  # noqa: B018


def test_loading_the_plugin_imports_nothing_but_motia():
    code = """
        import sys
        import motia
        before = set(sys.modules)
        import motia.testing.plugin
        new = set(sys.modules) - before
        print(sorted(name for name in new if name.startswith(("motia.testing.", "httpx", "motia.runtime.app"))))
        from motia.testing import FakeClock
        print(FakeClock.__module__)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.splitlines() == ["['motia.testing.plugin']", "motia.testing.clock"]
