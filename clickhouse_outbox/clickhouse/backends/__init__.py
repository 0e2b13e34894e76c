"""
The ClickHouse backend a configuration asks for, chosen by the scheme of its URL.

    http://host:8123, https://host:8443   a ClickHouse server (HttpBackend)
    chdb:///absolute/path                 an embedded chdb store (ChdbBackend)
    "urls": several http(s) URLs          replicas of one shard (FailoverBackend)

The configuration is parsed (and its problems found) by config.parse, which the system
checks use too. Backends are reused per thread and per configuration, so an HTTP backend
keeps its kept-alive connection and what it detected about the server; `reset_backends()`
drops them.
"""

import hashlib
import secrets
import threading

from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends.config import parse

_local = threading.local()
_generation_lock = threading.Lock()
_generation = 0
# Hashes the password in cache keys; random per process so a key reveals nothing.
_key_salt = secrets.token_bytes(16)


def get_backend(config=None):
    """The backend for `config` (default: EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG), reused in this thread."""
    config = conf.backend_config() if config is None else config
    if not isinstance(config, dict):
        return build_backend(config)  # raises ImproperlyConfigured, saying what to write
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
    parsed, problems = parse(config)
    if parsed is None:
        raise ImproperlyConfigured(" ".join(str(problem) for problem in problems if not problem.is_warning))
    if parsed.kind == "chdb":
        # Imported here: chdb is an optional dependency.
        from clickhouse_outbox.clickhouse.backends.chdb import ChdbBackend

        return ChdbBackend(path=parsed.path, database=parsed.database)
    from clickhouse_outbox.clickhouse.backends.http import HttpBackend

    replicas = [HttpBackend(url, **parsed.http_options()) for url in parsed.urls]
    if len(replicas) == 1:
        return replicas[0]
    from clickhouse_outbox.clickhouse.backends.failover import FailoverBackend

    return FailoverBackend(replicas)


def cache_key(config):
    """A hashable key for `config` in which the password appears only as a salted hash."""
    items = []
    for name, value in sorted(config.items()):
        if name == "password":
            value = hashlib.blake2b(str(value or "").encode("utf-8", "surrogatepass"), key=_key_salt, digest_size=16).hexdigest()
        items.append((name, repr(value)))
    return tuple(items)


def _thread_cache():
    if getattr(_local, "generation", None) != _generation:
        _close_all(getattr(_local, "backends", {}))
        _local.backends = {}
        _local.generation = _generation
    return _local.backends


def _close_all(backends):
    for backend in backends.values():
        backend.close()
