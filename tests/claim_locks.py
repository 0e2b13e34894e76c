"""
What the tests of claims that die with their claimer share (outbox.liveness): ending the
lock an owner id names from outside its process, as the server does when the process dies.
"""

import time

from django.db import connection

from clickhouse_outbox.outbox import liveness


def lock_session(owner):
    """The server session holding the lock `owner` names (a PostgreSQL backend pid, a MariaDB connection id)."""
    key = liveness.key_of(owner)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            unsigned = int.from_bytes(key, "big")
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid::bigint = %s AND objid::bigint = %s", [unsigned >> 32, unsigned & 0xFFFFFFFF],
            )
        else:
            cursor.execute("SELECT IS_USED_LOCK(%s)", [liveness.MysqlLocks.name(key)])
        row = cursor.fetchone()
    return row[0] if row else None


def end_lock(owner, timeout=10):
    """
    End the lock `owner` names from the server's side, as a DBA or a failover would: the
    session holding it is terminated (PostgreSQL) or killed (MariaDB/MySQL); on SQLite, whose
    lock a live process cannot lose, its file is removed. Returns once the lock shows free.
    """
    if connection.vendor == "sqlite":
        liveness.FileLocks(liveness.sqlite_folder(connection.settings_dict)).path(liveness.key_of(owner)).unlink()
    else:
        session = lock_session(owner)
        assert session is not None, f"nobody holds the lock of {owner}"
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s)", [session])
            else:
                cursor.execute(f"KILL CONNECTION {int(session)}")
    deadline = time.monotonic() + timeout
    while liveness.abandoned({owner}) != {owner}:  # the server ends a terminated backend a moment later
        assert time.monotonic() < deadline, f"the lock of {owner} is still held {timeout}s after its session was ended"
        time.sleep(0.01)
