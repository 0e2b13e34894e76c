"""
The management commands operators run: outbox_load_olx, outbox_drain, outbox_requeue,
dump_courses_to_clickhouse and clickhouse_outbox_outline, on real parts.
"""

import io
import shutil
import tarfile

import pytest
from django.core.management import CommandError, call_command

from clickhouse_outbox.clickhouse.backends.base import qualified_name
from clickhouse_outbox.models import Batch, OutboxEntry, Snapshot
from clickhouse_outbox.sources.olx import SAMPLE_COURSE_DIR, OlxFolderSource
from clickhouse_outbox.testing.generator import write_course_export
from tests.factories import BatchFactory

pytestmark = pytest.mark.django_db
SAMPLE_KEY = "course-v1:OpenedX+DemoX+2026_T1"


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def count(backend, table, where="1"):
    return int(backend.query(f"SELECT count() AS n FROM {qualified_name(backend.database, table)} WHERE {where}")[0]["n"])


def test_load_drain_and_outline_the_sample_course(olx_dir, clickhouse):
    out, _ = run("outbox_load_olx", str(SAMPLE_COURSE_DIR))
    assert f"published {SAMPLE_KEY}" in out
    snapshot = Snapshot.objects.get(subject=SAMPLE_KEY)
    assert snapshot.reason == "imported"
    out, _ = run("outbox_drain", "--until-empty", "--timeout", "60")
    assert f"({snapshot.row_count} rows) sent" in out
    out, _ = run("clickhouse_outbox_outline", SAMPLE_KEY)
    assert str(snapshot.dump_id) in out
    blocks = snapshot.entries.get(table="course_blocks").row_count
    assert f"course_blocks {blocks:>12}".replace(" ", "") in out.replace(" ", "")
    assert "1:1:1 - " in out and "[detached]" in out


def test_a_broken_export_is_reported_by_file_and_queues_nothing(olx_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(SAMPLE_COURSE_DIR, broken)
    chapter = next((broken / "chapter").glob("*.xml"))
    chapter.write_text("<chapter display_name='oops'><sequential url_name='x'>")
    with pytest.raises(CommandError, match="1 of 1 exports were not published"):
        run("outbox_load_olx", str(broken))
    assert not Snapshot.objects.exists() and not OutboxEntry.objects.exists()
    assert OlxFolderSource(root=olx_dir).course_keys() == []


def test_a_broken_export_does_not_stop_the_good_ones(olx_dir, tmp_path, capsys):
    good = write_course_export(tmp_path / "good", blocks=40, tarball=True)
    missing = tmp_path / "missing.tar.gz"
    with tarfile.open(missing, "w:gz"):
        pass
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("outbox_load_olx", str(missing), str(good), stdout=io.StringIO(), stderr=err)
    assert str(missing) in err.getvalue()
    assert Snapshot.objects.filter(status=Snapshot.Status.QUEUED).count() == 1


def test_drain_once_exits_non_zero_while_clickhouse_is_down(olx_dir, server_clickhouse, settings):
    run("outbox_load_olx", str(SAMPLE_COURSE_DIR))
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url="http://127.0.0.1:9", connect_timeout_secs=1
    )
    this_run = r"this run could not send everything \(0 batches \(0 rows\) sent, 1 batch to retry"
    with pytest.raises(CommandError, match=this_run) as failure:
        run("outbox_drain")
    assert failure.value.returncode == 1
    assert Batch.objects.get().status == Batch.Status.RETRY
    # The next run has nothing due, and still fails: ClickHouse is failing, rows wait.
    with pytest.raises(CommandError, match="ClickHouse is failing") as failure:
        run("outbox_drain")
    assert failure.value.returncode == 1


def test_drain_until_empty_gives_up_after_its_timeout(olx_dir, server_clickhouse, settings):
    run("outbox_load_olx", str(SAMPLE_COURSE_DIR))
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, url="http://127.0.0.1:9", connect_timeout_secs=1
    )
    with pytest.raises(CommandError, match="Gave up after 2s"):
        run("outbox_drain", "--until-empty", "--timeout", "2")
    assert OutboxEntry.objects.count() == 3  # nothing lost


def test_requeue_named_courses_and_all_courses(olx_dir, clickhouse, tmp_path):
    source = OlxFolderSource(root=olx_dir)
    keys = [source.add_export(write_course_export(tmp_path / f"c{i}", blocks=20, course=f"Req{i}")) for i in range(3)]
    out, _ = run("outbox_requeue", str(keys[0]))
    assert "1 of 1 course queued" in out
    out, _ = run("outbox_requeue", "--all-courses")
    assert "done: 3 of 3 courses (3 queued)" in out
    assert Snapshot.objects.filter(reason="requeue").count() == 1
    assert Snapshot.objects.filter(reason="dump").count() == 3
    assert Snapshot.objects.filter(status=Snapshot.Status.SUPERSEDED).count() == 1
    run("outbox_drain", "--until-empty", "--timeout", "60")
    assert count(clickhouse, "course_overviews") == 3


def test_requeue_an_unknown_course_is_a_clear_error_and_records_nothing(olx_dir):
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 course could not be queued"):
        call_command("outbox_requeue", "course-v1:No+Such+Course", stdout=io.StringIO(), stderr=err)
    assert "Not queued: course-v1:No+Such+Course: " in err.getvalue()  # the key as typed
    assert not Snapshot.objects.exists()  # a typo is not a failed snapshot that --failed retries forever
    with pytest.raises(CommandError, match="is not a course key"):
        run("outbox_requeue", "nonsense")
    with pytest.raises(CommandError, match="Name course keys"):
        run("outbox_requeue")


def test_requeue_failed_takes_failed_courses_again_and_retries_failed_batches(olx_dir, tmp_path):
    source = OlxFolderSource(root=olx_dir)
    key = source.add_export(write_course_export(tmp_path / "c", blocks=20))
    shutil.rmtree(olx_dir)  # the course cannot be read at publish time...
    from clickhouse_outbox.producers.course_structure import snapshot_or_record_failure

    assert snapshot_or_record_failure(key, "published").status == Snapshot.Status.FAILED
    olx_dir.mkdir()
    source.add_export(write_course_export(tmp_path / "c2", blocks=20))  # ... and can be later
    BatchFactory()
    out, _ = run("outbox_requeue", "--failed")
    assert "1 failed or waiting batch made due now" in out and "1 of 1 course queued" in out
    assert Batch.objects.get().status == Batch.Status.RETRY
    assert Snapshot.objects.filter(subject=str(key), status=Snapshot.Status.QUEUED).count() == 1


@pytest.mark.django_db(transaction=True)  # --drain sends from a thread of its own, with its own connection
def test_dump_courses_queues_every_course_and_can_drain(olx_dir, clickhouse, tmp_path):
    source = OlxFolderSource(root=olx_dir)
    keys = [source.add_export(write_course_export(tmp_path / f"d{i}", blocks=15, course=f"Dump{i}")) for i in range(4)]
    out, _ = run("dump_courses_to_clickhouse", "--courses_to_skip", str(keys[0]), "--force", "--drain")
    assert "done: 3 of 3 courses (3 queued)" in out
    assert count(clickhouse, "course_overviews") == 3
    assert count(clickhouse, "course_overviews", f"course_key = '{keys[0]}'") == 0
    run("dump_courses_to_clickhouse", "--courses", str(keys[1]), "--limit", "1")
    assert Snapshot.objects.filter(reason="dump").count() == 4


def test_outline_of_a_course_clickhouse_does_not_have(olx_dir, clickhouse):
    with pytest.raises(CommandError, match="has no rows for"):
        run("clickhouse_outbox_outline", SAMPLE_KEY)


def test_drain_until_empty_fails_when_a_batch_failed_for_good(olx_dir, clickhouse):
    from clickhouse_outbox.models import OutboxEntry as Entry

    run("outbox_load_olx", str(SAMPLE_COURSE_DIR))
    entry = Entry.objects.get(table="course_overviews")
    Entry.objects.filter(pk=entry.pk).update(payload=entry.lines().replace(b'"dump_id":"', b'"dump_id":"x'),
                                             encoding="")
    with pytest.raises(CommandError, match=r"1 batch \(1 row\) failed") as failure:
        run("outbox_drain", "--until-empty", "--timeout", "60")
    assert failure.value.returncode == 1
    assert Batch.objects.get(table="course_overviews").status == Batch.Status.FAILED
    assert count(clickhouse, "course_blocks") > 0  # the other tables went through


def test_dump_refuses_the_old_connection_options(olx_dir):
    with pytest.raises(CommandError, match="--url, --password: the connection now comes only from"):
        run("dump_courses_to_clickhouse", "--url", "http://x:8123", "--password", "hunter2")
    assert not Snapshot.objects.exists()
