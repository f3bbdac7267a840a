"""The project's ``.env`` is read when the ``motia`` command starts; variables already set win."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from motia.cli import main
from motia.cli.environment import load_project_env


def test_load_project_env_keeps_variables_already_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PYMOTIA_T_NEW=from-file\nPYMOTIA_T_SET=from-file\n")
    monkeypatch.setenv("PYMOTIA_T_SET", "from-env")
    monkeypatch.delenv("PYMOTIA_T_NEW", raising=False)
    try:
        assert load_project_env() == (tmp_path / ".env").resolve()
        assert os.environ["PYMOTIA_T_NEW"] == "from-file"
        assert os.environ["PYMOTIA_T_SET"] == "from-env"
    finally:
        os.environ.pop("PYMOTIA_T_NEW", None)


def test_no_env_file_is_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_project_env() is None


def test_the_command_reads_it_before_its_options(tmp_path, monkeypatch):
    # Given a .env that sets MOTIA_STATE_URL, when `motia state` runs without --state, then it uses that store.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOTIA_STATE_URL", raising=False)
    (tmp_path / ".env").write_text(f"MOTIA_STATE_URL=sqlite:///{tmp_path / 'from-env-file.db'}\n")
    try:
        result = CliRunner().invoke(main, ["state", "set", "s", "k", '{"a": 1}'])
        assert result.exit_code == 0, result.output
    finally:
        os.environ.pop("MOTIA_STATE_URL", None)
    assert (tmp_path / "from-env-file.db").exists()
    assert not (tmp_path / ".motia").exists()  # not the default store


def test_import_motia_does_not_import_dotenv():
    code = "import sys, motia, motia.testing; assert 'dotenv' not in sys.modules, 'dotenv imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
