"""docs/cli.md's console examples and the CLI throughput benchmark, each ``redmodel``
command a subprocess against the throwaway server.

Split from tests/test_cli.py (the suite's longest file) so that xdist runs these beside it:
``--dist loadfile`` keeps a file's tests in one worker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import redmodel
from examples.cardinfo import CardInfo, User
from examples.hatshop import stock
from redmodel.codecs import _fernet

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process encrypts with KEY_A (the subprocesses get it through the environment)."""
    monkeypatch.setattr(_fernet, "_configured", None)
    redmodel.codecs.configure_fernet(keys=[KEY_A])
    yield


# ---- docs/cli.md ---------------------------------------------------------------------------


def test_docs_cli_examples_run(redis_url: str, store: redmodel.Store, keys: None,
                               tmp_path: Path) -> None:
    """Every ``$ ...redmodel...`` line of docs/cli.md's console blocks exits 0."""
    store.save_many(stock())
    store.save(User("dan", CardInfo(2211849528391929, (2030, 9), 842), id="1000"))
    text = (ROOT / "docs" / "cli.md").read_text()
    blocks = re.findall(r"^```console\n(.*?)^```", text, re.S | re.M)
    commands = [line[2:] for block in blocks for line in block.splitlines()
                if line.startswith("$ ") and "redmodel" in line]
    assert len(commands) >= 8
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url,
           "REDMODEL_FERNET_KEYS": f"{KEY_B},{KEY_A}", "NEW_KEY": KEY_B, "OLD_KEY": KEY_A,
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{command}: {done.stderr}"
