"""
Several replicas in EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG: `urls` (a list, or a
comma-separated string as Tutor and environment variables give) and `insert_quorum`.
The single `url` keeps working as before; every message names the wrong entry and never
repeats a URL (it may hold a password).
"""

import pytest
from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.backends.config import parse
from clickhouse_outbox.clickhouse.backends.failover import FailoverBackend
from clickhouse_outbox.clickhouse.backends.http import HttpBackend

SECRET = "pa55-Word_Zx81"
SETTING = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"


def config(urls, **overrides):
    return {"urls": urls, "username": "ch_cms", "password": SECRET, "database": "event_sink",
            "timeout_secs": 7, "connect_timeout_secs": 2, **overrides}


def refused(cfg):
    with pytest.raises(ImproperlyConfigured) as caught:
        build_backend(cfg)
    message = str(caught.value)
    assert SECRET not in message and SECRET not in repr(caught.value)
    return message


@pytest.mark.parametrize("urls", [
    ["http://ch-1:8123", "https://ch-2:8443/"],
    ("http://ch-1:8123", "https://ch-2:8443/"),
    "http://ch-1:8123,https://ch-2:8443/",
    " http://ch-1:8123 ,  https://ch-2:8443/ ",
])
def test_several_urls_give_a_failover_backend_over_one_http_backend_each(urls):
    backend = build_backend(config(urls))

    assert isinstance(backend, FailoverBackend)
    assert [replica.address for replica in backend.replicas] == ["ch-1:8123", "ch-2:8443"]
    for replica in backend.replicas:
        assert isinstance(replica, HttpBackend)
        assert (replica.username, replica.database, replica.timeout_secs, replica.connect_timeout_secs) == (
            "ch_cms", "event_sink", 7, 2)
        assert replica._password == SECRET
        assert replica.insert_settings == {}
    assert backend.database == "event_sink"
    assert backend.address == "ch-1:8123, ch-2:8443"
    assert SECRET not in repr(backend)
    assert repr(backend) == "<FailoverBackend ch-1:8123, ch-2:8443 current=ch-1:8123 database='event_sink' user='ch_cms'>"


@pytest.mark.parametrize("urls", [["http://ch-1:8123"], "http://ch-1:8123", " http://ch-1:8123/ "])
def test_one_url_in_urls_is_a_plain_http_backend(urls):
    backend = build_backend(config(urls))

    assert isinstance(backend, HttpBackend)
    assert backend.address == "ch-1:8123"


def test_the_single_url_works_as_before():
    cfg = config(None, url="http://ch-1:8123")
    del cfg["urls"]
    parsed, problems = parse(cfg)
    assert (parsed.kind, problems) == ("http", [])
    assert parsed.urls == ("http://ch-1:8123",) and parsed.insert_settings == {}


def test_url_may_stay_set_when_it_is_one_of_the_urls():
    """Aspects sets `url`; an operator adds the replicas in `urls` without removing it."""
    backend = build_backend(config(["http://ch-1:8123", "http://ch-2:8123"], url="HTTP://CH-2:8123/"))

    assert [replica.address for replica in backend.replicas] == ["ch-1:8123", "ch-2:8123"]


@pytest.mark.parametrize("url", ["http://ch-3:8123", "http://ch-1:8124", "https://ch-1:8123", 8123])
def test_url_and_urls_that_disagree_are_refused(url):
    message = refused(config(["http://ch-1:8123", "http://ch-2:8123"], url=url))
    assert f"{SETTING}['url'] and ['urls'] disagree" in message


@pytest.mark.parametrize(("urls", "named", "says"), [
    (["http://ch-1:8123", f"http://ch_cms:{SECRET}@ch-2:8123"], "['urls'][1]", "must not contain credentials"),
    (f"http://ch-1:8123,https://:{SECRET}@ch-2:8443", "['urls'][1]", "must not contain credentials"),
    ([f"http://ch-1:8123/?password={SECRET}", "http://ch-2:8123"], "['urls'][0]", "query string"),
    (["http://ch-1:8123", "ftp://ch-2:21"], "['urls'][1]", "unsupported scheme ('ftp')"),
    (["http://ch-1:8123", "ch-2:8123"], "['urls'][1]", "unsupported scheme ('ch-2')"),
    (["http://ch-1:8123", "http://ch-2:notaport"], "['urls'][1]", "invalid port"),
    (["http://:8123", "http://ch-2:8123"], "['urls'][0]", "needs a host name"),
    (["http://ch-1:8123", "chdb:///var/lib/chdb"], "['urls'][1]", "chdb URL: the embedded engine has no replicas"),
    (["chdb:///var/lib/chdb"], "['urls'][0]", "chdb URL"),
    ("http://ch-1:8123,,http://ch-2:8123", "['urls'][1]", "is empty or not a string"),
    ("http://ch-1:8123,", "['urls'][1]", "is empty or not a string"),
    (["http://ch-1:8123", None], "['urls'][1]", "is empty or not a string"),
    (["http://ch-1:8123", 8123], "['urls'][1]", "is empty or not a string"),
    (["http://ch-1:8123", "http://CH-1:8123/"], "['urls'][1]", "names the same server as"),
    ([], "['urls']", "is empty"),
    ("  ", "['urls']", "is empty"),
    ({"a": "http://ch-1:8123"}, "['urls']", "must be a list of URLs or a comma-separated string"),
])
def test_a_bad_entry_is_named(urls, named, says):
    message = refused(config(urls))
    assert f"{SETTING}{named}" in message
    assert says in message


def test_a_duplicate_names_both_entries():
    message = refused(config(["http://ch-1:8123", "http://ch-2:8123", "http://ch-1:8123"]))
    assert f"{SETTING}['urls'][2] names the same server as {SETTING}['urls'][0]" in message


@pytest.mark.parametrize(("timeout", "expected"), [(7, "5250"), (10, "7500"), (0.5, "375")])
def test_insert_quorum_is_sent_with_a_timeout_inside_ours(timeout, expected):
    backend = build_backend(config(["http://ch-1:8123", "http://ch-2:8123"], insert_quorum=2, timeout_secs=timeout))

    for replica in backend.replicas:
        assert replica.insert_settings == {"insert_quorum": "2", "insert_quorum_timeout": expected}


def test_insert_quorum_with_one_url():
    cfg = config(None, url="http://balancer:8123", insert_quorum=3)
    del cfg["urls"]
    assert build_backend(cfg).insert_settings == {"insert_quorum": "3", "insert_quorum_timeout": "5250"}


@pytest.mark.parametrize("quorum", [0, 1, -2, "2", 2.0, True, [2]])
def test_a_bad_insert_quorum_is_refused(quorum):
    message = refused(config(["http://ch-1:8123", "http://ch-2:8123"], insert_quorum=quorum))
    assert f"{SETTING}['insert_quorum'] must be a whole number of replicas, at least 2" in message


def test_insert_quorum_has_no_meaning_for_chdb(tmp_path):
    message = refused({"url": f"chdb://{tmp_path}", "database": "event_sink", "insert_quorum": 2})
    assert "embedded engine has no replicas" in message


def test_the_default_url_does_not_join_the_replicas(settings):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"urls": "http://ch-1:8123,http://ch-2:8123",
                                                     "database": "event_sink"}

    config_now = conf.backend_config()

    assert "url" not in config_now
    assert config_now["timeout_secs"] == conf.DEFAULT_BACKEND_CONFIG["timeout_secs"]
    assert parse(config_now)[0].kind == "failover"


def test_failover_needs_two_replicas():
    with pytest.raises(ValueError, match="at least two"):
        FailoverBackend([HttpBackend("http://ch-1:8123")])
