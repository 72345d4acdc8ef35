"""Throwaway backends for a native Celery stack: a PostgreSQL database and a Redis DB of its own.

    with scratch_postgres_database() as database_url, scratch_redis_db() as broker_url:
        LocalAirflow(home, dags, port, executor="CeleryExecutor",
                     database_url=database_url, broker_url=broker_url).start()

Several stacks (tests, helpers, CI) share one PostgreSQL and one Redis server on a machine. Each
run gets a fresh database ``shipflow_dist_<random>`` (dropped afterwards, connections and all)
and a Redis DB index nobody else uses (claimed with a marker key, flushed afterwards: only that
index, never the others). A server that cannot be reached raises ``BackendUnavailable`` naming it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

# The machine's own services (trust auth, no password): override with the arguments.
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
DATABASE_PREFIX = "shipflow_dist_"
# Marks a Redis DB index as taken by one run; a DB holding any other key belongs to someone else.
REDIS_CLAIM_KEY = "shipflow:claimed-by"


class BackendUnavailable(RuntimeError):
    """A PostgreSQL or Redis server could not be reached or had no room; the message says which."""


def _postgres_connect(server_url: str):  # -> psycopg2 connection
    import psycopg2  # imported here: only Celery stacks need it

    try:
        connection = psycopg2.connect(server_url, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(f"PostgreSQL at {server_url} is not reachable: {first_line}") from None
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return connection


def create_postgres_database(server_url: str = DEFAULT_POSTGRES) -> str:
    """Create an empty database ``shipflow_dist_<random>``; returns its SQLAlchemy URL (psycopg2)."""
    name = f"{DATABASE_PREFIX}{secrets.token_hex(4)}"
    connection = _postgres_connect(server_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')  # a name made here: hex digits only
    finally:
        connection.close()
    parts = urlsplit(server_url)
    return urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{name}", parts.query, ""))


def drop_postgres_database(database_url: str, server_url: str = DEFAULT_POSTGRES) -> None:
    """Drop a database made by ``create_postgres_database``, ending any session still connected."""
    name = urlsplit(database_url).path.lstrip("/")
    if not name.startswith(DATABASE_PREFIX) or not name[len(DATABASE_PREFIX):].isalnum():
        raise ValueError(f"{database_url} was not made by create_postgres_database: not dropping it")
    connection = _postgres_connect(server_url)
    try:
        with connection.cursor() as cursor:
            # WITH (FORCE), PostgreSQL 13+: a process killed mid-query may leave a session behind.
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


@contextmanager
def scratch_postgres_database(server_url: str = DEFAULT_POSTGRES) -> Iterator[str]:
    """A fresh database for the ``with`` block (its SQLAlchemy URL), dropped at the end."""
    database_url = create_postgres_database(server_url)
    try:
        yield database_url
    finally:
        drop_postgres_database(database_url, server_url)


def _redis(server_url: str, db: int = 0):  # -> redis.Redis
    import redis  # imported here: only Celery stacks need it

    return redis.Redis.from_url(server_url, db=db, socket_connect_timeout=5, socket_timeout=10)


def claim_redis_db(server_url: str = DEFAULT_REDIS) -> str:
    """Claim an empty Redis DB index (never 0, everyone's default); returns ``redis://host:port/N``."""
    import redis

    try:
        databases = int(_redis(server_url).config_get("databases")["databases"])
    except redis.RedisError as exc:
        raise BackendUnavailable(f"Redis at {server_url} is not reachable: {exc}") from None
    token = secrets.token_hex(8)
    # Random order: two runs starting together rarely try the same index first.
    for db in sorted(range(1, databases), key=lambda _: secrets.randbelow(1 << 16)):
        client = _redis(server_url, db)
        try:
            if client.set(REDIS_CLAIM_KEY, token, nx=True):
                if client.dbsize() == 1:
                    return f"{server_url.rstrip('/')}/{db}"
                client.delete(REDIS_CLAIM_KEY)  # it held other keys: someone else's
        finally:
            client.close()
    raise BackendUnavailable(f"Redis at {server_url}: all {databases - 1} DB indexes besides 0 are in use")


def release_redis_db(broker_url: str) -> None:
    """Flush the one DB index that ``claim_redis_db`` handed out (and only that one)."""
    parts = urlsplit(broker_url)
    db = int(parts.path.lstrip("/"))
    if db == 0:
        raise ValueError(f"{broker_url}: DB 0 is never claimed, not flushing it")
    client = _redis(urlunsplit((parts.scheme, parts.netloc, "", "", "")), db)
    try:
        client.flushdb()
    finally:
        client.close()


@contextmanager
def scratch_redis_db(server_url: str = DEFAULT_REDIS) -> Iterator[str]:
    """A Redis DB index of its own for the ``with`` block (a broker URL), flushed at the end."""
    broker_url = claim_redis_db(server_url)
    try:
        yield broker_url
    finally:
        release_redis_db(broker_url)
