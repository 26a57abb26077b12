"""An acknowledged turn survives a SIGKILL of the process that wrote it (SQLite and PostgreSQL).

A child process writes a turn through the repository exactly as the service does before an
ack, prints "acked", and is SIGKILLed the moment the parent reads that line: no shutdown
hook, no engine dispose, no checkpoint. Reopening the database must find the turn, still
``received``, i.e. ready for start-up recovery.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from assist.store import Database, TurnStatus
from assist.store.testing import temporary_database

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHILD = r"""
import asyncio, sys
from assist.store import Database

async def main(url, schema):
    db = Database.open(url, schema=schema or None)
    async with db.transaction() as uow:
        await uow.conversations.ensure("c-kill", initial_state={"stage": "opening"})
        await uow.conversations.insert_turn("c-kill", turn_id="t-kill", role="customer", text="宝宝红屁屁了怎么办")
    print("acked", flush=True)   # the service sends its ack here
    await asyncio.sleep(60)      # never reached in the test: the parent kills us first

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _kill_after_ack(db: Database) -> int:
    """Run the child, SIGKILL it right after "acked"; return the size of the SQLite WAL left behind."""
    url = db.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, db.schema or ""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "acked", f"child failed: {line!r} {child.stderr.read() if child.stderr else ''}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    wal = Path(f"{db.url.database}-wal")
    return wal.stat().st_size if db.dialect == "sqlite" and wal.exists() else 0


async def test_acked_turn_survives_sigkill(backend: str, tmp_path: Path) -> None:
    async with temporary_database(backend, tmp_path) as db:  # type: ignore[arg-type]
        await db.close()  # the parent holds no connection while the child writes
        wal_bytes = await asyncio.to_thread(_kill_after_ack, db)
        if backend == "sqlite":
            # The commit is still only in the write-ahead log (nobody checkpointed), so this
            # exercises WAL recovery on reopen rather than a tidy shutdown.
            assert wal_bytes > 0
        reopened = Database.open(db.url, schema=db.schema)
        try:
            async with reopened.transaction() as uow:
                turn = await uow.conversations.get_turn("c-kill", "t-kill")
                pending = await uow.conversations.pending_turns()
        finally:
            await reopened.close()
    assert turn is not None and turn.text == "宝宝红屁屁了怎么办" and turn.status is TurnStatus.received
    assert [(t.conversation_id, t.turn_id) for t in pending] == [("c-kill", "t-kill")]
