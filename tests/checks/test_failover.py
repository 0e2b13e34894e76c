"""
The system checks for several replicas (`urls`, `insert_quorum`): each bad entry is
reported with its own id and names the entry, never the URL; the lease covers a send that
tries every replica in turn.
"""

import pytest

from tests.checks.test_checks import GOOD_BACKEND, good, ids, our_errors  # noqa: F401 (good: a fixture)

SECRET = "S3cret-Pa55word"
REPLICAS = ["http://ch-1:8123", "http://ch-2:8123"]


def replicas(settings, urls=REPLICAS, **changes):
    config = {key: value for key, value in GOOD_BACKEND.items() if key != "url"}
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(config, urls=urls, **changes)


@pytest.mark.parametrize("urls", [REPLICAS, ",".join(REPLICAS), " http://ch-1:8123 , https://ch-2:8443/ "])
def test_good_replica_lists_pass(good, urls):  # noqa: F811
    replicas(good, urls)
    assert ids() == []


def test_url_that_is_one_of_the_urls_passes(good):  # noqa: F811
    replicas(good, url="http://ch-2:8123")
    assert ids() == []


@pytest.mark.parametrize(("urls", "named", "wanted"), [
    (["http://ch-1:8123", "ftp://ch-2:8123"], "['urls'][1]", "clickhouse_outbox.E001"),
    (["http://ch-1:8123", f"http://ch_cms:{SECRET}@ch-2:8123"], "['urls'][1]", "clickhouse_outbox.E002"),
    (f"http://ch_cms:{SECRET}@ch-1:8123,http://ch-2:8123", "['urls'][0]", "clickhouse_outbox.E002"),
])
def test_each_entry_is_checked_as_the_single_url_is(good, urls, named, wanted):  # noqa: F811
    replicas(good, urls)
    (error,) = our_errors()
    assert error.id == wanted
    assert f"EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG{named}" in error.msg
    assert SECRET not in f"{error.msg} {error.hint} {error!r}"


@pytest.mark.parametrize(("urls", "changes", "says"), [
    ([], {}, "['urls'] is empty"),
    ("", {}, "['urls'] is empty"),
    (42, {}, "must be a list of URLs"),
    (["http://ch-1:8123", ""], {}, "['urls'][1] is empty"),
    (["http://ch-1:8123", "chdb:///srv/chdb"], {}, "['urls'][1] is a chdb URL"),
    (["http://ch-1:8123", "http://ch-1:8123/"], {}, "['urls'][1] names the same server as"),
    (REPLICAS, {"url": f"http://ch_cms:{SECRET}@ch-3:8123"}, "['url'] and ['urls'] disagree"),
])
def test_e007_malformed_urls(good, urls, changes, says):  # noqa: F811
    replicas(good, urls, **changes)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E007"
    assert says in error.msg
    assert error.hint
    assert SECRET not in f"{error.msg} {error.hint} {error!r}"


@pytest.mark.parametrize("quorum", [2, 3, None])
def test_good_insert_quorum_passes(good, quorum):  # noqa: F811
    replicas(good, insert_quorum=quorum)
    assert ids() == []


@pytest.mark.parametrize("quorum", [0, 1, "2", 2.5, True])
def test_e008_bad_insert_quorum(good, quorum):  # noqa: F811
    replicas(good, insert_quorum=quorum)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E008"
    assert "['insert_quorum']" in error.msg


def test_e008_is_reported_with_other_errors(good):  # noqa: F811
    replicas(good, ["ftp://ch-1:8123", "http://ch-2:8123"], insert_quorum=1)
    assert ids() == ["clickhouse_outbox.E001", "clickhouse_outbox.E008"]


def test_insert_quorum_on_chdb_is_e006(good, tmp_path):  # noqa: F811
    good.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(GOOD_BACKEND, url=f"chdb://{tmp_path}", insert_quorum=2)
    (error,) = our_errors()
    assert error.id == "clickhouse_outbox.E006"
    assert "no replicas" in error.msg


@pytest.mark.parametrize(("lease", "replica_urls", "bad"), [
    (9, REPLICAS[:1], False),   # one server: 5 + 3 s
    (9, REPLICAS, True),        # two replicas tried in turn: 2 × (5 + 3) s
    (16, REPLICAS, True),
    (17, REPLICAS, False),
    (24, [*REPLICAS, "http://ch-3:8123"], True),
    (25, [*REPLICAS, "http://ch-3:8123"], False),
])
def test_e011_lease_covers_every_replica(good, lease, replica_urls, bad):  # noqa: F811
    good.CLICKHOUSE_OUTBOX_LEASE_SECS = lease
    replicas(good, replica_urls, timeout_secs=5, connect_timeout_secs=3)
    errors = our_errors()
    assert [error.id for error in errors] == (["clickhouse_outbox.E011"] if bad else [])
    if bad and len(replica_urls) > 1:
        assert f"times the {len(replica_urls)} replicas" in errors[0].msg
