"""
EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG has one parser (clickhouse/backends/config.py): the
system checks report exactly what the backend refuses, malformed URLs included (an error,
never a traceback), and no message shows a URL or a credential.
"""

import base64
import traceback

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox.clickhouse.backends import build_backend
from clickhouse_outbox.clickhouse.backends.config import parse
from tests.leaks import assert_no_trace_of

GOOD = {"url": "http://clickhouse:8123", "username": "ch_cms", "password": "Wq7-zK",
        "database": "event_sink", "timeout_secs": 5, "connect_timeout_secs": 3}


def check_messages(settings, config):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = config
    return [message for message in run_checks() if message.id and message.id.startswith("clickhouse_outbox.E00")]


def refused(config):
    try:
        build_backend(config)
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


#: Configurations the checks and the backend once judged differently, and their neighbours.
CONFIGS = [
    {},
    {"timeout_secs": "5"},
    {"timeout_secs": True},
    {"connect_timeout_secs": "3"},
    {"timeout_secs": float("inf")},
    {"timeout_secs": float("nan")},
    {"timeout_secs": 0.25},
    {"database": "event-sink"},
    {"database": "event sink"},
    {"database": "1events"},
    {"database": "db;DROP"},
    {"database": "a.b"},
    {"database": "_x9"},
    {"url": "http://[::1"},
    {"url": "http://[::1]:8123"},
    {"url": "http://[::1]x:8123"},
    {"url": "http://[zz]:8123"},
    {"url": "http://clickhouse:65536"},
    {"url": "http://clickhouse:0"},
    {"url": "http://clickhouse:-1"},
    {"url": "http://clickhouse:+80"},
    {"url": "http://clickhouse:８１２３"},
    {"url": "http://click house:8123"},
    {"url": "http://clickhouse:8123/\n"},
    {"url": "http://clickhouse:8123/a\tb"},
    {"url": "http://clickhouse:8123/prefix"},
    {"url": "https://clickhouse.example.org"},
    {"url": "http://clickhouse:8123#top"},
    {"url": "http://ClickHouse-1.example:8123/"},
    {"url": "http://clïckhouse.example:8123"},
    {"url": 8123},
    {"urls": ["http://[::1", "http://ch-2:8123"]},
    {"urls": ["http://ch-1:99999", "http://ch-2:8123"]},
    {"urls": "http://[::1]:8123,http://[::1]:8124"},
    {"urls": ["http://ch-1:8123", "http://ch-2:8123"], "url": "http://[::1"},
    {"username": "ch:cms"},
    {"username": "ch_cms\n"},
    {"username": 7},
    {"password": 123456},
    {"password": "\udcff-undecodable"},
    {"password": None},
    {"username": None},
    {"insert_quorum": 2},
    {"insert_quorum": "2"},
]


@pytest.mark.parametrize("changes", CONFIGS, ids=repr)
def test_the_checks_and_the_backend_agree(settings, changes):
    config = dict(GOOD, **changes)
    errors = check_messages(settings, config)
    message = refused(config)
    assert bool(errors) == (message is not None), (errors, message)
    for error in errors:
        assert error.msg in message
        assert error.hint


@pytest.mark.parametrize("setting", ["http://clickhouse:8123", ["http://clickhouse:8123"], 8123])
def test_a_setting_that_is_not_a_dict_is_an_error(settings, setting):
    (error,) = check_messages(settings, setting)
    assert error.id == "clickhouse_outbox.E006" and "must be a dict" in error.msg
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        build_backend(setting)


@pytest.mark.parametrize("url", [
    "http://[::1", "http://[::1]x", "http://host:65536", "http://host:0", "http://host:port", "http://:8123",
    "http://host name:8123", "http://[::1]]:8123", "https://[:::]",
])
def test_a_malformed_url_is_an_error_naming_the_key_not_a_traceback(settings, url):
    (error,) = check_messages(settings, dict(GOOD, url=url))
    assert error.id == "clickhouse_outbox.E006"
    assert "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG['url']" in error.msg
    with pytest.raises(ImproperlyConfigured):
        build_backend(dict(GOOD, url=url))


SECRET = "Zq€7 wÖrd-Xy"


@pytest.mark.parametrize(("password", "check_id"), [
    (f"{SECRET}\n", "clickhouse_outbox.W009"),
    (f" {SECRET}", "clickhouse_outbox.W009"),
    (f"{SECRET}\x00", "clickhouse_outbox.W009"),
    (f"{SECRET}\udcff", "clickhouse_outbox.E009"),
])
def test_a_doubtful_password_is_named_not_shown(settings, password, check_id):
    settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(GOOD, password=password)
    (message,) = [message for message in run_checks() if message.id == check_id]
    assert "['password']" in message.msg
    assert_no_trace_of(SECRET, f"{message.msg} {message.hint} {message!r}")
    if check_id.startswith("clickhouse_outbox.W"):
        assert parse(dict(GOOD, password=password))[0].password == password  # sent exactly as it is
    else:
        with pytest.raises(ImproperlyConfigured) as caught:
            build_backend(dict(GOOD, password=password))
        assert_no_trace_of(SECRET, "".join(traceback.format_exception(caught.value)))


def test_any_other_password_passes_the_checks(settings):
    for password in (SECRET, "pässwörd", "пароль", "🔑", "a\"b'c\\d", "a:b:c", "x" * 500):
        settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG = dict(GOOD, password=password)
        assert [message for message in run_checks() if message.id and "clickhouse_outbox" in message.id] == []


def test_a_backend_with_any_password_never_shows_it(settings):
    backend = build_backend(dict(GOOD, password=SECRET, username="ch_ćms"))
    assert_no_trace_of(SECRET, repr(backend))
    # Sent in basic authentication as UTF-8, whatever its characters (the transport's headers).
    assert backend._headers["Authorization"] == b"Basic " + base64.b64encode("ch_ćms:".encode() + SECRET.encode())


def test_the_parsed_config_hides_the_password():
    parsed, problems = parse(dict(GOOD, password=SECRET))
    assert problems == []
    assert_no_trace_of(SECRET, repr(parsed))
