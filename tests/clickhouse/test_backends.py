"""
Choosing and reusing a backend from EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG.
"""

import sys
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox.clickhouse.backends import (
    build_backend,
    cache_key,
    get_backend,
    reset_backends,
)
from clickhouse_outbox.clickhouse.backends.config import BackendConfig, parse
from clickhouse_outbox.clickhouse.backends.chdb import ChdbBackend
from clickhouse_outbox.clickhouse.backends.http import HttpBackend

SECRET = "pa55-Word_Zx81"


def config(url, **overrides):
    return {"url": url, "username": "ch_cms", "password": SECRET, "database": "event_sink", **overrides}


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://clickhouse:8123", "clickhouse", 8123),
        ("https://ch.example.com:8443/", "ch.example.com", 8443),
        ("https://ch.example.com", "ch.example.com", 443),
        ("HTTP://127.0.0.1:18123", "127.0.0.1", 18123),
    ],
)
def test_http_urls_give_an_http_backend(url, host, port):
    backend = build_backend(config(url, timeout_secs=7, connect_timeout_secs=2))

    assert isinstance(backend, HttpBackend)
    assert (backend.host, backend.port, backend.database) == (host, port, "event_sink")
    assert (backend.connect_timeout_secs, backend.timeout_secs) == (2, 7)
    assert SECRET not in repr(backend)


def test_absolute_chdb_path_gives_a_chdb_backend(tmp_path):
    backend = build_backend(config(f"chdb://{tmp_path}/my%20store"))

    assert isinstance(backend, ChdbBackend)
    assert backend.path == f"{tmp_path}/my store"
    assert backend.database == "event_sink"


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("chdb://relative/path", "chdb:///"),
        ("chdb:relative/path", "chdb:///"),
        ("ftp://clickhouse:21", "unsupported scheme ('ftp')"),
        ("clickhouse:8123", "e.g. http://clickhouse:8123"),
        ("127.0.0.1:8123", "e.g. http://clickhouse:8123"),
        ("", "must be a URL"),
        ("http://:8123", "needs a host name"),
        ("http://clickhouse:notaport", "invalid port"),
        ("http://clickhouse:8123/?user=ch_cms", "must not have a query string"),
    ],
)
def test_bad_urls_say_how_to_fix_them(url, advice):
    with pytest.raises(ImproperlyConfigured) as caught:
        build_backend(config(url))

    assert advice in str(caught.value)
    assert SECRET not in str(caught.value)
    parsed, problems = parse(config(url))
    assert parsed is None and problems


def test_parse_builds_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "chdb", None)  # a system check must not need the driver

    parsed, problems = parse(config("chdb:///srv/chdb"))
    assert (parsed.kind, parsed.path, parsed.database, problems) == ("chdb", "/srv/chdb", "event_sink", [])
    parsed, problems = parse(config("http://clickhouse:8123"))
    assert isinstance(parsed, BackendConfig) and parsed.kind == "http" and problems == []
    assert parsed.password == SECRET  # for the backend only: never in a message
    assert SECRET not in repr(parsed)


@pytest.mark.parametrize(
    "url",
    [
        f"http://ch_cms:{SECRET}@clickhouse:8123",
        f"https://:{SECRET}@clickhouse:8443",
        f"chdb://ch_cms:{SECRET}@/var/lib/chdb",
        f"ftp://ch_cms:{SECRET}@clickhouse",
    ],
)
def test_credentials_in_the_url_are_refused_without_repeating_them(url):
    with pytest.raises(ImproperlyConfigured) as caught:
        build_backend(config(url))

    message = str(caught.value)
    assert "must not contain credentials" in message
    assert "'username'" in message and "'password'" in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value)


@pytest.mark.parametrize(("name", "value"), [("timeout_secs", 0), ("connect_timeout_secs", -1), ("timeout_secs", "x")])
def test_timeouts_must_be_positive(name, value):
    with pytest.raises(ImproperlyConfigured) as caught:
        build_backend(config("http://clickhouse:8123", **{name: value}))
    assert name in str(caught.value)


def test_a_database_is_required():
    with pytest.raises(ImproperlyConfigured):
        build_backend(config("http://clickhouse:8123", database=""))


def test_missing_chdb_says_which_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "chdb", None)
    monkeypatch.setitem(sys.modules, "chdb.session", None)

    with pytest.raises(ImproperlyConfigured) as caught:
        build_backend(config(f"chdb://{tmp_path}"))

    assert "pip install clickhouse_outbox[embedded]" in str(caught.value)


def test_one_backend_per_thread_and_config():
    first = get_backend(config("http://clickhouse:8123"))

    assert get_backend(config("http://clickhouse:8123")) is first
    assert get_backend(config("http://clickhouse:8123", password="other")) is not first
    assert get_backend(config("http://clickhouse:8123", database="other")) is not first
    in_other_thread = []
    thread = threading.Thread(target=lambda: in_other_thread.append(get_backend(config("http://clickhouse:8123"))))
    thread.start()
    thread.join()
    assert in_other_thread[0] is not first
    assert isinstance(in_other_thread[0], HttpBackend)


def test_the_cache_key_does_not_hold_the_password():
    key = cache_key(config("http://clickhouse:8123"))

    assert SECRET not in repr(key)
    assert cache_key(config("http://clickhouse:8123")) == key
    assert cache_key(config("http://clickhouse:8123", password="other")) != key


def test_reset_backends_closes_and_replaces_them(monkeypatch):
    first = get_backend(config("http://clickhouse:8123"))
    closed = []
    monkeypatch.setattr(first, "close", lambda: closed.append(first))

    reset_backends()

    assert closed == [first]
    assert get_backend(config("http://clickhouse:8123")) is not first


def test_reset_backends_reaches_other_threads():
    ready, reset_done = threading.Event(), threading.Event()
    seen = []

    def worker():
        seen.append(get_backend(config("http://clickhouse:8123")))
        ready.set()
        reset_done.wait(5)
        seen.append(get_backend(config("http://clickhouse:8123")))

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait(5)
    reset_backends()
    reset_done.set()
    thread.join()

    assert seen[0] is not seen[1]


def test_default_config_comes_from_settings(settings, tmp_path):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = {"url": f"chdb://{tmp_path}", "database": "sink"}

    backend = get_backend()

    assert isinstance(backend, ChdbBackend)
    assert (backend.path, backend.database) == (str(tmp_path), "sink")
