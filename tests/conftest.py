"""Session-wide test set-up.

Every Settings() built in a test reads ASSIST_VAR_DIR; pointing it at one session directory
lets the demo shop's KB index be built once and then loaded by every test that needs it
(building it embeds ~800 texts). Tests that need isolation pass their own var_dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SESSION_VAR = Path(tempfile.mkdtemp(prefix="assist-test-var-"))
os.environ["ASSIST_VAR_DIR"] = str(_SESSION_VAR)


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    # The session directory holds a built index and SQLite files: don't leave one per run in /tmp.
    shutil.rmtree(_SESSION_VAR, ignore_errors=True)
