"""
Any ClickHouse password works, on a real server: characters outside latin-1, quotes,
spaces at either end, a colon, a line break. Against a ClickHouse 18.16 server of the
test's own (the shared one keeps its one user), whose users file holds users with such
passwords. A wrong password is refused with a message, in-process and in `manage.py`
commands, that shows no piece of it, tracebacks included.
"""

import hashlib
import subprocess
import sys
import traceback
import uuid
from xml.sax.saxutils import escape

import pytest

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.errors import ClickHouseRejected
from clickhouse_outbox.models import Batch
from clickhouse_outbox.outbox.drain import drain
from tests.conftest import destination
from tests.factories import CourseSnapshotFactory
from tests.faults.conftest import OwnClickHouseServer
from tests.faults.helpers import TABLES, ch_count
from tests.leaks import assert_no_trace_of
from tests.processes import ROOT, project_env

pytestmark = [pytest.mark.clickhouse_server]

#: user: password. Requests sent these in the X-ClickHouse-Key header as latin-1: the first
#: raised UnicodeEncodeError quoting a character, the second was refused by the server (other
#: bytes than its UTF-8 password), the spaces and the line break never left requests.
USERS = {
    "euro": "Zq€7 wÖrd-Xy",
    "latin1": "pÄsswÖrd-Qj",
    "cyrillic": "пароль-Жq9",
    "emoji": "🔑 kéy-Vb",
    "spaces": "  Rq4 Tz8 Mw9 ",
    "newline": "Fn7q-Zw9x-Lk\n",
    "quotes": "a\"b'c\\d `e` <f>&;$(Hx)",
    "colon": "Kx7:b9:cQ",
}
#: Users whose password the users file holds as text (XML-escaped); the others as a SHA-256 hash.
PLAIN = {"quotes", "euro"}


def users_xml(users):
    entries = []
    for user, password in users.items():
        if user in PLAIN:
            secret = f"<password>{escape(password)}</password>"
        else:
            secret = f"<password_sha256_hex>{hashlib.sha256(password.encode('utf-8')).hexdigest()}</password_sha256_hex>"
        entries.append(f"<{user}>{secret}<networks><ip>127.0.0.1</ip></networks>"
                       f"<profile>default</profile><quota>default</quota></{user}>")
    return (
        '<?xml version="1.0"?>\n<yandex><profiles><default><max_memory_usage>4000000000</max_memory_usage>'
        f"</default></profiles><users>{''.join(entries)}</users><quotas><default><interval>"
        "<duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows>"
        "<read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas></yandex>\n"
    )


@pytest.fixture(scope="module")
def credentials_server(tmp_path_factory):
    """A ClickHouse server only these tests use, with the users of USERS; stopped at the end."""
    folder = tmp_path_factory.mktemp("credentials-clickhouse")
    users_file = folder / "users.xml"
    users_file.write_text(users_xml(USERS), encoding="utf-8")
    server = OwnClickHouseServer(folder / "server", users_file=users_file)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def config(server, user, password, database="default"):
    return {"url": server.url, "username": user, "password": password, "database": database,
            "timeout_secs": 10, "connect_timeout_secs": 2}


def wrong(password):
    """Another password, as long, differing in a character outside latin-1."""
    return password[:-1] + "Ω"


@pytest.mark.parametrize("user", USERS)
def test_every_password_works(credentials_server, user):
    backend = build_backend(config(credentials_server, user, USERS[user]))
    try:
        assert backend.query("SELECT 1 AS one") == [{"one": 1}]
    finally:
        backend.close()


@pytest.mark.parametrize("user", ["euro", "cyrillic", "newline", "quotes"])
def test_a_wrong_password_is_refused_without_a_trace_of_it(credentials_server, user):
    attempt = wrong(USERS[user])
    backend = build_backend(config(credentials_server, user, attempt))
    with pytest.raises(ClickHouseRejected) as caught:
        backend.query("SELECT 1")
    backend.close()
    assert f"rejected the credentials of user {user!r}" in str(caught.value)
    shown = "".join(traceback.format_exception(caught.value))
    assert_no_trace_of(attempt, shown)
    assert_no_trace_of(USERS[user], shown)


def manage(*args, env):
    """`manage.py ARGS` in a process of its own: (exit status, stdout and stderr)."""
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.django_db(transaction=True)
def test_the_drain_and_the_commands_with_a_password_outside_latin1(credentials_server, settings):
    user, password = "euro", USERS["euro"]
    good = config(credentials_server, user, password, database=f"outbox_credentials_{uuid.uuid4().hex[:10]}")
    with destination(settings, good, drop_database=True) as backend:
        snapshot = CourseSnapshotFactory()
        result = drain()
        assert result.ok and result.batches_sent == len(TABLES), result.errors
        assert sum(ch_count(backend, table.name) for table in TABLES) == snapshot.row_count

        for args in (["clickhouse_outbox_schema", "--check"], ["outbox_drain", "--once"]):
            status, output = manage(*args, env=project_env(good))
            assert status == 0, output
            assert_no_trace_of(password, output)

        bad = dict(good, password=wrong(password))
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = bad
        CourseSnapshotFactory()
        for args in (["clickhouse_outbox_schema", "--check"], ["outbox_drain", "--once"], ["outbox_verify"]):
            status, output = manage(*args, env=project_env(bad))
            assert status != 0, output
            assert "Traceback" not in output and "UnicodeEncodeError" not in output, output
            assert_no_trace_of(bad["password"], output)
            assert_no_trace_of(password, output)
        failed = Batch.objects.exclude(last_error="")
        assert failed.exists()
        for batch in failed:
            assert "rejected the credentials" in batch.last_error
            assert_no_trace_of(bad["password"], batch.last_error)


def test_a_password_ending_in_a_line_break_is_warned_of_and_still_sent(credentials_server):
    """`manage.py check` warns (W009) without showing it; the server takes it as it is."""
    password = USERS["newline"]
    env = project_env(config(credentials_server, "newline", password))
    status, output = manage("check", env=env)
    assert status == 0 and "clickhouse_outbox.W009" in output, output
    assert_no_trace_of(password, output)
