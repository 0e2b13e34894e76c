"""
Claims that die with their claimer: a claim names a lock its claimer holds while it lives.

A drain run, a run of deferred snapshots and a dump worker each take a database lock for
as long as they run, before they claim anything, and give it back after their last
conditional update. The owner ids they record on what they claim (`lease_owner`) name that
lock. The lock goes when the claimer's process does (the server ends its session, the
kernel closes its file), so a claim whose owner's lock is free belongs to a claimer that
died, or that ended: the next claim takes it at once instead of waiting out its lease.
Two live claimers never take each other's claims: a live claimer holds its lock, and one
that lost it (its lock session was killed) claims and sends nothing more.

    PostgreSQL        a session advisory lock (pg_try_advisory_lock) on a connection of the run's own
    MySQL / MariaDB   GET_LOCK(name, 0) on a connection of the run's own (not on Galera: not cluster-wide)
    SQLite            an flock()ed file in a folder beside the database file (one machine)

An owner id that names a lock reads xxxxxxxx-xxxx-7c1a-…: its first eight bytes are the
lock's key, six random ones and a mark (a UUID of version 7, which MariaDB's UUID column
accepts, with "c1a" where a time-ordered one has random bits); the last eight differ per
drain loop of one run. A random (version 4) owner, written by a claimer without a lock
(CLICKHOUSE_OUTBOX_CLAIM_LOCKS off, a lock that could not be taken, an older release),
names none, and only its lease frees its claims. The lease stays the last resort: for a
claimer that hangs while it lives, and for a host that vanished without closing its
connections. Decision record 0011 says why a lock rather than heartbeats.
"""

import fcntl
import logging
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from clickhouse_outbox import conf

log = logging.getLogger(__name__)

#: Bytes 6 and 7 of an owner id that names a lock: version 7, then "c1a" ("claim").
OWNER_MARK = b"\x7c\x1a"
#: MySQL/MariaDB lock names are server-wide (every database of the server): the prefix says whose.
MYSQL_PREFIX = "clickhouse_outbox."
#: The folder of SQLite lock files, beside the database file.
SQLITE_FOLDER_SUFFIX = "-clickhouse_outbox-claims"
LOCK_FILE_SUFFIX = ".lock"
#: A run picks another key when its first one is taken (it never is, but a lock held is never shared).
KEY_TRIES = 3


def new_key():
    """A random lock key: six random bytes and the mark."""
    return os.urandom(6) + OWNER_MARK


def owner_id(key):
    """A new owner id naming the lock `key` (the RFC 9562 variant bits set, as MariaDB's UUID column wants)."""
    tail = bytearray(os.urandom(8))
    tail[0] = (tail[0] & 0x3F) | 0x80
    return uuid.UUID(bytes=key + bytes(tail))


def key_of(owner):
    """The lock key an owner id names, or None (an owner that holds no lock: only its lease frees its claims)."""
    if owner is None:
        return None
    if not isinstance(owner, uuid.UUID):
        owner = uuid.UUID(str(owner))
    if owner.bytes[6:8] != OWNER_MARK:
        return None
    return owner.bytes[:8]


# -- the three kinds of lock ----------------------------------------------------------------


class PostgresLocks:
    """Session advisory locks, keyed by the key as a signed 64-bit integer."""

    vendor = "postgresql"

    @staticmethod
    def number(key):
        return int.from_bytes(key, "big", signed=True)

    def acquire(self, cursor, key):
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.number(key)])
        return bool(cursor.fetchone()[0])

    def holds(self, cursor, key):
        # Asks the server whether this very session holds it (not just that the connection
        # answers): a pooler that handed the statement to another session says no.
        unsigned = int.from_bytes(key, "big")
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND granted AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s)",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        )
        return bool(cursor.fetchone()[0])

    def release(self, cursor, key):
        cursor.execute("SELECT pg_advisory_unlock(%s)", [self.number(key)])

    def free(self, cursor, keys):
        """The keys no session of this database holds."""
        cursor.execute(
            "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        held = {((classid << 32) | objid).to_bytes(8, "big") for classid, objid in cursor.fetchall()}
        return {key for key in keys if key not in held}


class MysqlLocks:
    """User-level locks (GET_LOCK), named after the key."""

    vendor = "mysql"

    @staticmethod
    def name(key):
        return MYSQL_PREFIX + key.hex()

    def acquire(self, cursor, key):
        cursor.execute("SELECT GET_LOCK(%s, 0)", [self.name(key)])
        return cursor.fetchone()[0] == 1

    def holds(self, cursor, key):
        cursor.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", [self.name(key)])
        return cursor.fetchone()[0] == 1

    def release(self, cursor, key):
        cursor.execute("SELECT RELEASE_LOCK(%s)", [self.name(key)])

    def free(self, cursor, keys):
        keys = list(keys)
        cursor.execute("SELECT " + ", ".join(["IS_FREE_LOCK(%s)"] * len(keys)), [self.name(key) for key in keys])
        return {key for key, free in zip(keys, cursor.fetchone(), strict=True) if free == 1}


class FileLocks:
    """
    SQLite: one file per key in a folder beside the database file, held with flock() (per
    open file, so two runs of one process exclude each other too). A file whose lock can be
    taken belongs to a claimer that is gone: whoever finds it so removes it.
    """

    vendor = "sqlite"

    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, key):
        return self.folder / (key.hex() + LOCK_FILE_SUFFIX)

    def acquire(self, key):
        """The open file holding the lock on `key`, or None if another process holds it."""
        self.folder.mkdir(exist_ok=True)
        self.sweep()
        path = self.path(key)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not self.same_file(fd, path):  # removed by a sweep between the open and the lock: not a lock anyone sees
            os.close(fd)
            return None
        os.write(fd, f"{os.getpid()}\n".encode())  # for an operator who wonders whose file it is
        return fd

    @staticmethod
    def same_file(fd, path):
        """Whether `path` is still the file open as `fd` (someone may have removed it: then nobody sees the lock)."""
        try:
            named, opened = os.stat(path), os.fstat(fd)
        except OSError:
            return False
        return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)

    def holds(self, fd, key):
        return self.same_file(fd, self.path(key))

    def release(self, fd, key):
        try:
            if self.same_file(fd, self.path(key)):
                self.path(key).unlink()
        finally:
            os.close(fd)

    def take_if_free(self, path):
        """True if nobody holds the lock file at `path` (it is then removed)."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            if self.same_file(fd, path):
                path.unlink()
        finally:
            os.close(fd)
        return True

    def free(self, keys):
        return {key for key in keys if self.take_if_free(self.path(key))}

    def sweep(self):
        """Remove the files of claimers that died holding no claim (nobody else would look at them)."""
        for path in self.folder.glob("*" + LOCK_FILE_SUFFIX):
            self.take_if_free(path)


def sqlite_folder(settings_dict):
    """The lock folder beside a SQLite database file; None for an in-memory database (one process)."""
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    if name.startswith("file:"):
        name = name[len("file:"):].split("?", 1)[0]
    real = Path(os.path.realpath(name))  # one folder whatever path a process was given to the file
    return real.parent / (real.name + SQLITE_FOLDER_SUFFIX)


_galera = {}


def on_galera(connection):
    """
    Whether a MySQL/MariaDB server is a Galera node: GET_LOCK is not cluster-wide there, so
    a lock held through one node looks free through another. Asked once per process.
    """
    settings = connection.settings_dict
    where = (settings.get("HOST"), settings.get("PORT"), settings.get("NAME"))
    if where not in _galera:
        with connection.cursor() as cursor:
            cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
            row = cursor.fetchone()
        _galera[where] = bool(row) and str(row[1]).upper() == "ON"
    return _galera[where]


def locks_for(connection):
    """The kind of lock claims on `connection`'s database can name, or None where they cannot (leases only)."""
    if not conf.value("CLICKHOUSE_OUTBOX_CLAIM_LOCKS"):
        return None
    if connection.vendor == "postgresql":
        return PostgresLocks()
    if connection.vendor == "mysql":
        return None if on_galera(connection) else MysqlLocks()
    if connection.vendor == "sqlite":
        folder = sqlite_folder(connection.settings_dict)
        return FileLocks(folder) if folder else None
    return None


# -- a claimer ------------------------------------------------------------------------------


class Claimer:
    """
    What one run claims under: owner ids that name its lock, and whether it still holds it.
    Without a lock (leases only), owner ids are random (version 4) and `holds()` is True.
    Shared by the run's threads: the lock's connection is used under a mutex.
    """

    def __init__(self, locks=None, key=None, handle=None, description=""):
        self.locks, self.key, self.handle = locks, key, handle
        self.description = description
        self.lost = False
        self._mutex = threading.Lock()

    @property
    def has_lock(self):
        return self.key is not None

    def owner(self):
        """A new owner id for one claiming loop (each drain thread has its own: updates are conditional on it)."""
        return owner_id(self.key) if self.has_lock else uuid.uuid4()

    def holds(self):
        """
        Whether the lock is still ours: asked right before each claim and each send. Once
        lost, never again (a reconnected session would not hold it).
        """
        if not self.has_lock:
            return True
        with self._mutex:
            if self.lost:
                return False
            try:
                if isinstance(self.locks, FileLocks):
                    held = self.locks.holds(self.handle, self.key)
                else:
                    with self.handle.cursor() as cursor:
                        held = self.locks.holds(cursor, self.key)
            except DatabaseError as exc:
                log.error("clickhouse_outbox: the database lock of %s is gone: its connection failed (%s)",
                          self.description, exc)
                held = False
            else:
                if not held:
                    log.error("clickhouse_outbox: the database lock of %s is gone (its session was ended)",
                              self.description)
            self.lost = not held
            return held

    def close(self):
        """Give the lock back (after the run's last update) and close its connection."""
        if not self.has_lock:
            return
        with self._mutex:
            if isinstance(self.locks, FileLocks):
                self.locks.release(self.handle, self.key)
                return
            try:
                if not self.lost:
                    with self.handle.cursor() as cursor:
                        self.locks.release(cursor, self.key)
            except DatabaseError:
                pass  # the session is gone, and its locks with it
            finally:
                self.handle.dec_thread_sharing()
                try:
                    self.handle.close()
                except DatabaseError:
                    pass  # a connection the server ended


def take_lock(locks, alias, description):
    """A Claimer holding a new lock of kind `locks`, or None if it could not be taken (then leases only)."""
    if isinstance(locks, FileLocks):
        for _ in range(KEY_TRIES):
            key = new_key()
            fd = locks.acquire(key)
            if fd is not None:
                return Claimer(locks, key, fd, description)
        return None
    handle = connections.create_connection(alias)  # not in `connections`: nothing else closes it
    handle.inc_thread_sharing()  # the run's threads ask it whether the lock is still held
    try:
        with handle.cursor() as cursor:
            for _ in range(KEY_TRIES):
                key = new_key()
                if locks.acquire(cursor, key):
                    return Claimer(locks, key, handle, description)
    except Exception:
        handle.dec_thread_sharing()
        handle.close()
        raise
    handle.dec_thread_sharing()
    handle.close()
    return None


@contextmanager
def claiming(description, using=DEFAULT_DB_ALIAS):
    """
    A Claimer for one run (`description` names it in logs): its lock is held from here to
    the end of the block. Where no lock can be taken (the setting is off, a Galera cluster,
    an in-memory SQLite database, the lock could not be taken), the run claims on leases
    alone, as before, and says so in the log.
    """
    claimer = None
    locks = locks_for(connections[using])
    if locks is not None:
        try:
            claimer = take_lock(locks, using, description)
        except (DatabaseError, OSError) as exc:
            log.warning("clickhouse_outbox: %s could not take its database lock (%s); its claims are freed by their "
                        "lease only if it dies", description, exc)
        else:
            if claimer is None:
                log.warning("clickhouse_outbox: %s could not take its database lock; its claims are freed by their "
                            "lease only if it dies", description)
    claimer = claimer or Claimer(description=description)
    try:
        yield claimer
    finally:
        claimer.close()


def abandoned(owners, using=DEFAULT_DB_ALIAS):
    """
    The owner ids among `owners` whose claimer is gone: each names a lock, and nobody holds
    it. Owners that name no lock are never among them. Asked from the claim's own
    connection; the claim then takes the rows by compare-and-swap (or under SKIP LOCKED) on
    the owner it read, so two claimers never both take one.
    """
    by_key = {}
    for owner in owners:
        key = key_of(owner)
        if key is not None:
            by_key.setdefault(key, []).append(owner)
    if not by_key:
        return set()
    connection = connections[using]
    locks = locks_for(connection)
    if locks is None:
        return set()
    if isinstance(locks, FileLocks):
        free = locks.free(by_key)
    else:
        with connection.cursor() as cursor:
            free = locks.free(cursor, by_key)
    return {owner for key in free for owner in by_key[key]}
