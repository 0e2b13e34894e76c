"""
The ClickHouse backend a configuration asks for, chosen by the scheme of its URL.

    http://host:8123, https://host:8443   a ClickHouse server (HttpBackend)
    chdb:///absolute/path                 an embedded chdb store (ChdbBackend)

Backends are reused per thread and per configuration, so an HTTP backend keeps its
connection pool and what it detected about the server; `reset_backends()` drops them.
"""

import hashlib
import os
import secrets
import threading
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox import conf

SETTING_NAME = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"
HTTP_SCHEMES = ("http", "https")
CHDB_SCHEME = "chdb"

_local = threading.local()
_generation_lock = threading.Lock()
_generation = 0
# Hashes the password in cache keys; random per process so a key reveals nothing.
_key_salt = secrets.token_bytes(16)


def get_backend(config=None):
    """The backend for `config` (default: EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG), reused in this thread."""
    config = conf.backend_config() if config is None else dict(config)
    cache = _thread_cache()
    key = cache_key(config)
    backend = cache.get(key)
    if backend is None:
        backend = cache[key] = build_backend(config)
    return backend


def reset_backends():
    """Close this thread's backends and make every other thread build new ones on next use."""
    global _generation
    with _generation_lock:
        _generation += 1
    _close_all(getattr(_local, "backends", {}))
    _local.backends = {}
    _local.generation = _generation


def build_backend(config):
    """A new backend for `config`; ImproperlyConfigured (saying how to fix it) if it cannot be one."""
    kind, options = validate_config(config)
    if kind == "http":
        from clickhouse_outbox.clickhouse.backends.http import HttpBackend

        return HttpBackend(**options)
    # Imported here: chdb is an optional dependency.
    from clickhouse_outbox.clickhouse.backends.chdb import ChdbBackend

    return ChdbBackend(**options)


def validate_config(config):
    """
    ("http" | "chdb", the backend's keyword arguments) for `config`, or ImproperlyConfigured
    saying how to fix it. Builds nothing and imports no driver: usable by system checks.
    """
    url = config.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ImproperlyConfigured(f"{SETTING_NAME}['url'] must be a URL such as http://clickhouse:8123")
    url = url.strip()
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Never repeat the URL: it holds a password.
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['url'] must not contain credentials: remove 'user:password@' from it and set "
            f"{SETTING_NAME}['username'] and ['password'] instead"
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['url'] must not have a query string or fragment: settings and credentials "
            "have their own keys"
        )
    database = config.get("database")
    if not isinstance(database, str) or not database:
        raise ImproperlyConfigured(f"{SETTING_NAME}['database'] must name the destination database, e.g. 'event_sink'")
    scheme = parts.scheme.lower()
    if scheme in HTTP_SCHEMES:
        return "http", _http_options(parts, url, config)
    if scheme == CHDB_SCHEME:
        return "chdb", _chdb_options(parts, database)
    raise ImproperlyConfigured(
        f"{SETTING_NAME}['url'] has the unsupported scheme {parts.scheme + ':' if parts.scheme else '(none)'}; "
        "use http://host:8123 or https://host:8443 for a ClickHouse server, or chdb:///absolute/path for an "
        "embedded store"
    )


def cache_key(config):
    """A hashable key for `config` in which the password appears only as a salted hash."""
    items = []
    for name, value in sorted(config.items()):
        if name == "password":
            value = hashlib.blake2b(str(value or "").encode("utf-8"), key=_key_salt, digest_size=16).hexdigest()
        items.append((name, repr(value)))
    return tuple(items)


def _http_options(parts, url, config):
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or port == 0:
        raise ImproperlyConfigured(f"{SETTING_NAME}['url'] has an invalid port: use e.g. http://host:8123")
    if not parts.hostname:
        raise ImproperlyConfigured(f"{SETTING_NAME}['url'] needs a host name, e.g. http://clickhouse:8123")
    return {
        "url": url,
        "username": config.get("username") or "",
        "password": config.get("password") or "",
        "database": config["database"],
        "timeout_secs": _positive_number(config, "timeout_secs"),
        "connect_timeout_secs": _positive_number(config, "connect_timeout_secs"),
    }


def _chdb_options(parts, database):
    if parts.netloc or not os.path.isabs(parts.path):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['url'] for chdb needs an absolute path after three slashes, e.g. "
            "chdb:///var/lib/clickhouse_outbox/chdb (chdb://relative/path is not supported)"
        )
    return {"path": unquote(parts.path), "database": database}


def _positive_number(config, name):
    value = config.get(name, conf.DEFAULT_BACKEND_CONFIG[name])
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ImproperlyConfigured(f"{SETTING_NAME}[{name!r}] must be a number of seconds above 0, not {value!r}")
    return number


def _thread_cache():
    if getattr(_local, "generation", None) != _generation:
        _close_all(getattr(_local, "backends", {}))
        _local.backends = {}
        _local.generation = _generation
    return _local.backends


def _close_all(backends):
    for backend in backends.values():
        backend.close()
