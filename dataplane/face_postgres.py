"""The face store in PostgreSQL (DATABASE_URL, psycopg 3), for several replicas: each one reads
the state row before a search, so a registration committed by any replica is recognised by every
other on its next request (face_store.py says how). Not Redis: it is deployed as an evicting cache.

One connection per process, made on first use and made again after an error; the URL is a secret
(it may hold a password) and is never logged or shown: errors name their type only.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable

import psycopg

from dataplane.face_store import SCHEMA, FaceStore

# Replicas starting together create the schema one at a time (an advisory lock taken in the
# creating transaction): CREATE TABLE IF NOT EXISTS is not safe against a concurrent create.
SCHEMA_LOCK = 0x66616365  # "face"


class PostgresFaceStore(FaceStore):
    backend = "postgresql"
    errors = (psycopg.Error,)

    def __init__(self, url: str, model: str, size: int, clock: Callable[[], float] = time.time,
                 connect_timeout: float = 5.0):
        super().__init__(model, size, clock)
        self._url, self._connect_timeout = url, connect_timeout
        self._lock = threading.Lock()
        self._connection: psycopg.Connection | None = None

    def _connected(self) -> psycopg.Connection:
        """The connection (held under self._lock), made and the schema ensured when there is none."""
        if self._connection is None or self._connection.closed:
            connection = psycopg.connect(self._url, autocommit=True, connect_timeout=int(self._connect_timeout))
            try:
                with connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for statement in SCHEMA:
                        connection.execute(statement.format(serial="BIGSERIAL", blob="BYTEA"))
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            connection = self._connected()
            with connection.transaction():
                yield lambda sql, params: connection.execute(sql.replace("?", "%s"), params)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connected().execute(sql.replace("?", "%s"), params).fetchall()

    def _broken(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    self._connection.close()
                self._connection = None

    def close(self) -> None:
        self._broken()
