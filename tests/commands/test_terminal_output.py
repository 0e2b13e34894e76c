"""
What the commands write to a terminal: a course author writes display names (and url_names,
which end up in error texts), ClickHouse quotes rows in its errors. Whatever they hold,
escape sequences, BEL, C1 controls, bidirectional overrides, zero-width characters, line
separators, no raw control character reaches stdout or stderr: each is shown as visible
text (\\x1b, \\u202e), while accents, CJK and emoji stay readable (`text.printable`).

Real courses (OLX exports read by the real reader), a real ClickHouse (chdb), the commands
as operators run them; for the error a command ends with, `manage.py` in another process.
"""

import json
import subprocess
import sys
import unicodedata
from datetime import timedelta
from xml.sax.saxutils import quoteattr

import pytest
from django.contrib.auth.models import Permission

from clickhouse_outbox.db import db_now
from clickhouse_outbox.models import Batch, Snapshot
from clickhouse_outbox.receivers import course_published
from clickhouse_outbox.sources.olx import folder_name
from clickhouse_outbox.testing.generator import write_course_export
from clickhouse_outbox.text import printable
from tests.admin import pages
from tests.admin.helpers import COURSES, post_action
from tests.commands.test_status import command
from tests.factories import BatchFactory
from tests.processes import ROOT, project_env
from tests.reconcile.helpers import delete_rows

pytestmark = pytest.mark.django_db

#: What a course author can put in a display name (policy.json is JSON: any character).
HOSTILE = ("\x1b[31mRED\x1b[0m \x1b]0;pwned\x07 \x9b2J \x7f \u202egnp.exe\u202c \u2066iso\u2069 zero\u200bwidth "
           "\ufeffbom a\u200db line\u2028sep car\rriage new\nline")
#: ... and what must stay as it is.
READABLE = "Crème brûlée 日本語 🎓 👩‍💻 👨‍👩‍👧"
#: What the escaped HOSTILE shows: each character as visible text.
SHOWN = ("\\x1b[31mRED\\x1b[0m \\x1b]0;pwned\\x07 \\x9b2J \\x7f \\u202egnp.exe\\u202c \\u2066iso\\u2069 "
         "zero\\u200bwidth \\ufeffbom a\\u200db line\\u2028sep car\\rriage new\\nline")
#: What an XML attribute (a url_name) can hold: C1 controls, DEL, bidi and zero-width characters (no
#: C0 control but tab, newline and carriage return, which the display names above cover).
HOSTILE_IN_XML = "x\x9b2J\x7f\u202eabc\u200b<b>y</b>"
SHOWN_IN_XML = "x\\x9b2J\\x7f\\u202eabc\\u200b<b>y</b>"


def raw_controls(text):
    """The characters a terminal would act on or hide, by Unicode category (newlines and tabs are lines)."""
    return sorted({
        f"U+{ord(char):04X}" for index, char in enumerate(text)
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs") and char not in "\n\t"
        and not (char == "\u200d" and text[index - 1] in "👩👨" and text[index + 1] in "💻👩👧")
    })


def assert_shown_safely(*outputs):
    for text in outputs:
        assert raw_controls(text) == [], text


# -- the shared function -----------------------------------------------------------------


@pytest.mark.parametrize(("given", "shown"), [
    ("course-v1:Org+Course+Run", "course-v1:Org+Course+Run"),
    (READABLE, READABLE),
    (HOSTILE, SHOWN),
    ("\x00\x01\x1f\x7f\x80\x85\x9f", "\\x00\\x01\\x1f\\x7f\\x80\\x85\\x9f"),
    ("\u200e\u200f\u061c\u202a\u202b\u202d\u2067\u2068\u2060\u00ad", "\\u200e\\u200f\\u061c\\u202a\\u202b\\u202d"
                                                                   "\\u2067\\u2068\\u2060\\xad"),
    ("a\u200db", "a\\u200db"),  # a joiner that joins no emoji hides nothing: shown
    ("\U000e0041\ud800", "\\U000e0041\\ud800"),  # a tag character, a lone surrogate
    ("tab\there", "tab\\there"),
])
def test_printable_escapes_what_a_terminal_acts_on_and_keeps_the_rest(given, shown):
    assert printable(given) == shown
    assert raw_controls(printable(given)) == []


def test_a_commands_own_lines_keep_their_newlines_a_value_does_not():
    assert printable("one\n\ttwo \x1b[2J", keep_lines=True) == "one\n\ttwo \\x1b[2J"
    assert printable("one\ntwo") == "one\\ntwo"


# -- courses whose names or files say too much ------------------------------------------------


def hostile_export(tmp_path, name="Hostile"):
    """A generated course whose course and first chapter are named by an attacker (policy.json)."""
    export = write_course_export(tmp_path / "exports", blocks=6, org="TermX", course=name, run="2026")
    policy_file = export / "policies" / "2026" / "policy.json"
    policy = json.loads(policy_file.read_text())
    chapter = sorted((export / "chapter").glob("*.xml"))[0].stem
    policy["course/2026"]["display_name"] = f"{READABLE} {HOSTILE}"
    policy[f"chapter/{chapter}"] = {"display_name": HOSTILE}
    policy_file.write_text(json.dumps(policy))
    return export


def break_export(olx_dir, course_key):
    """The course's export in the folder now points to a chapter whose url_name names no file."""
    course_file = olx_dir / folder_name(course_key) / "course" / "2026.xml"
    text = course_file.read_text()
    course_file.write_text(text.replace("<wiki ", f"<chapter url_name={quoteattr(HOSTILE_IN_XML)}/>\n  <wiki ", 1))


def test_display_names_are_escaped_in_the_load_the_drain_and_the_outline(olx_dir, tmp_path, chdb_clickhouse):
    export = hostile_export(tmp_path)
    loaded = command("outbox_load_olx", str(export))
    assert loaded.code == 0, loaded.err
    key = Snapshot.objects.get().subject
    drained = command("outbox_drain")
    assert drained.code == 0, drained.message

    outline = command("clickhouse_outbox_outline", key)

    assert outline.code == 0, outline.message
    assert_shown_safely(loaded.out, loaded.err, drained.out, drained.err, outline.out, outline.err)
    assert f" - {READABLE} {SHOWN}  (course)" in outline.out  # readable, and on its own line
    assert f" - {SHOWN}  (chapter)" in outline.out
    labels = outline.out.split("Outline (section:subsection:unit - display name):\n", 1)[1].splitlines()
    blocks = chdb_clickhouse.query(f"SELECT count() AS n FROM {chdb_clickhouse.database}.course_blocks")[0]["n"]
    assert len(labels) == int(blocks)  # one line per block: a newline in a name made no line of its own


@pytest.fixture
def unreadable(olx_source, olx_dir, tmp_path):
    """A course whose export cannot be read: its error names a file after a url_name an author chose."""
    key = str(olx_source.add_export(hostile_export(tmp_path, "Broken")))
    break_export(olx_dir, key)
    course_published(sender=None, course_key=key)
    failed = Snapshot.objects.get(subject=key)
    # The reader quotes the url_name as Python shows it (escaped) since it refuses it before it becomes a path
    # (sources/olx): either way, what the commands print must be escaped.
    assert failed.status == Snapshot.Status.FAILED, failed.error
    assert HOSTILE_IN_XML in failed.error or SHOWN_IN_XML in failed.error, failed.error
    return key


def test_an_error_text_is_escaped_in_the_status_and_the_requeue(unreadable, chdb_clickhouse):
    status = command("outbox_status")
    requeued = command("outbox_requeue", "--failed")
    dumped = command("outbox_requeue", "--all-courses")

    assert status.code == 1 and requeued.code == 1 and dumped.code == 1
    assert_shown_safely(status.out, status.err, requeued.out, requeued.err, dumped.out, dumped.err)
    assert f"'{SHOWN_IN_XML}' is not a valid block id" in status.out
    assert f"Not queued: {unreadable}: " in requeued.err and SHOWN_IN_XML in requeued.err
    assert f"Not queued: {unreadable}: " in dumped.err and SHOWN_IN_XML in dumped.err
    # --json keeps the data as it is: JSON escapes every control character itself.
    report = json.loads(command("outbox_status", "--json").out)
    assert "\u202eabc" in report["failed_snapshots"][0]["error"].encode().decode("unicode_escape")


def test_an_error_text_is_escaped_in_a_verification_that_repairs(olx_source, olx_dir, tmp_path, chdb_clickhouse):
    key = str(olx_source.add_export(hostile_export(tmp_path, "Verified")))
    course_published(sender=None, course_key=key)
    assert command("outbox_drain").code == 0
    delete_rows(chdb_clickhouse, "course_blocks", f"course_key = '{key}'")
    break_export(olx_dir, key)  # the repair cannot read it again

    verified = command("outbox_verify", "--producer", "course_structure", "--repair")

    assert verified.code == 1
    assert_shown_safely(verified.out, verified.err)
    assert f"Not queued: {key}: " in verified.err and SHOWN_IN_XML in verified.err


def test_a_requested_snapshot_that_cannot_be_read_is_escaped_in_the_drain(olx_source, olx_dir, tmp_path,
                                                                           chdb_clickhouse, settings):
    settings.CLICKHOUSE_OUTBOX_SNAPSHOT_AT = "drain"
    key = str(olx_source.add_export(hostile_export(tmp_path, "Requested")))
    break_export(olx_dir, key)
    course_published(sender=None, course_key=key)

    drained = command("outbox_drain")

    assert drained.code == 1
    assert_shown_safely(drained.out, drained.err)
    assert f"  {key}: " in drained.err and SHOWN_IN_XML in drained.err


# -- the error a command ends with, as manage.py prints it ----------------------------------------


HOUR = timedelta(hours=1)


def clickhouse_error_quoting_a_row():
    """What ClickHouse's answer to a rejected row says: the row quoted, display name included."""
    return f'Code: 26, e.displayText() = DB::Exception: Cannot parse input: "display_name":"{HOSTILE}"'


@pytest.mark.django_db(transaction=True)
def test_manage_py_prints_the_errors_escaped(olx_source, olx_dir, tmp_path):
    """The status and the drain end with the problems: a ClickHouse error quoting a row, an unreadable course."""
    key = str(olx_source.add_export(hostile_export(tmp_path, "Managed")))
    break_export(olx_dir, key)
    course_published(sender=None, course_key=key)
    BatchFactory(status=Batch.Status.RETRY, attempts=1, attempts_at_requeue=0, next_attempt_at=db_now() + HOUR,
                 last_error=clickhouse_error_quoting_a_row(), error_code=26, server_error=False)
    env = project_env({"url": f"chdb://{tmp_path / 'chdb'}", "database": "unused"}, OLX_COURSES_DIR=str(olx_dir))

    def run(*args):
        return subprocess.run(  # noqa: S603 (our own manage.py)
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT, env=env, capture_output=True, timeout=120, check=False,
        )

    ended = {}
    for args in (["outbox_status"], ["outbox_requeue", key], ["outbox_drain"]):
        done = run(*args)
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 1, err
        assert_shown_safely(out, err)
        assert err.count("CommandError: ") == 1, err  # (the log lines before it are escaped too)
        ended[args[0]] = err.split("CommandError: ", 1)[1]
    # The problems outbox_status and outbox_drain end with: the batch's error quoting the row (an error
    # text keeps its lines), the course.
    quoted = '"display_name":"' + SHOWN.replace("\\n", "\n")
    assert quoted in ended["outbox_status"] and quoted in ended["outbox_drain"]
    assert f"could not be read ({key})" in ended["outbox_status"]
    assert ended["outbox_requeue"] == "1 course could not be queued.\n"


def test_admin_messages_are_escaped_for_html_and_for_the_eye(olx_source, olx_dir, tmp_path, client,
                                                             django_user_model):
    key = str(olx_source.add_export(hostile_export(tmp_path, "Admin")))
    break_export(olx_dir, key)
    course_published(sender=None, course_key=key)
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="clickhouse_outbox",
                                                         codename__in=["view_snapshot", "requeue_course"]))
    client.force_login(staff)

    response = post_action(client, COURSES, "requeue_subjects", list(Snapshot.objects.all()), follow=True)

    (message,) = pages.messages(response)
    assert message.startswith(f"Could not requeue {key}: ") and f"'{SHOWN_IN_XML}' is not a valid block id" in message
    assert_shown_safely(message)
    shown = pages.parse(response).find("ul", class_="messagelist")
    assert shown is not None and shown.find("b") is None  # the author's <b> is text, not markup
    assert "&lt;b&gt;y&lt;/b&gt;&#x27; is not a valid block id" in response.content.decode()
