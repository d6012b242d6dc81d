"""The face store: who is registered, as embeddings (never photos), kept by a database, searched
in memory.

The database holds the truth: one row per embedding (userid, the model that made it, its 32-bit
floats) and one state row whose `generation` every write increments inside its own transaction.
A registration is one transaction and a deletion another, so a crash leaves all of one or none of
it. Writers take the state row first, so they commit one after another in generation order.

Each process keeps the current model's embeddings in a numpy matrix (`FaceIndex`) and searches
it exactly. Before each search it reads the state row: a higher generation means another writer
(this process, another worker, another replica) committed, and only the rows of the newer
generations are read; after a deletion (`purged` past what it holds) the index is read again
whole. So a registration anywhere is recognised everywhere on the next request.

Backends: SQLite in DATA_DIR (WAL, synchronous=FULL), or PostgreSQL (face_postgres.py) when
DATABASE_URL is set, for several replicas.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from errors import FaceStoreUnavailable

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS face_store_state (id INTEGER PRIMARY KEY CHECK (id = 1),
       generation BIGINT NOT NULL, purged BIGINT NOT NULL)""",
    "INSERT INTO face_store_state (id, generation, purged) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS face_embeddings (id {serial} PRIMARY KEY, userid TEXT NOT NULL,
       model TEXT NOT NULL, embedding {blob} NOT NULL, generation BIGINT NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS face_embeddings_userid ON face_embeddings (userid)",
    "CREATE INDEX IF NOT EXISTS face_embeddings_model_generation ON face_embeddings (model, generation)",
)
BUMP = "UPDATE face_store_state SET generation = generation + 1 WHERE id = 1 RETURNING generation"


@dataclasses.dataclass(frozen=True)
class Nearest:
    userid: str | None      # None: nobody is registered
    distance: float         # Euclidean; inf when nobody is registered


class FaceIndex:
    """One model's embeddings in memory. Rows are appended into spare capacity (grown by
    doubling: a copy now and then, not per registration) and published as one tuple, so a
    search reads a consistent snapshot while a refresh appends behind it."""

    def __init__(self, size: int):
        self.size = size
        self.generation = 0
        self._view: tuple = (0, np.empty((0, size), np.float32), np.empty(0, np.float32), [])

    @property
    def count(self) -> int:
        return self._view[0]

    def userids(self) -> set[str]:
        count, _, _, users = self._view
        return set(users[:count])

    def replace(self, rows: list[tuple[str, bytes]], generation: int) -> None:
        """Everything read again (after a deletion): published at once, never an empty index between."""
        capacity = max(len(rows), 16)
        empty = (0, np.empty((capacity, self.size), np.float32), np.empty(capacity, np.float32), [])
        self._view = self._appended(empty, rows)
        self.generation = generation

    def append(self, rows: list[tuple[str, bytes]], generation: int) -> None:
        self._view = self._appended(self._view, rows)
        self.generation = generation

    def _appended(self, view: tuple, rows: list[tuple[str, bytes]]) -> tuple:
        """`view` with `rows` after it: written into its spare capacity (where no reader looks), or
        into a copy twice as large."""
        count, vectors, norms, users = view
        if not rows:
            return view
        block = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), self.size)
        end = count + len(rows)
        if end > len(vectors):
            capacity = max(end, 2 * len(vectors))
            grown, grown_norms = np.empty((capacity, self.size), np.float32), np.empty(capacity, np.float32)
            grown[:count], grown_norms[:count] = vectors[:count], norms[:count]
            vectors, norms = grown, grown_norms
        vectors[count:end] = block
        norms[count:end] = np.einsum("ij,ij->i", block, block)
        return end, vectors, norms, users[:count] + [userid for userid, _ in rows]

    def nearest(self, queries: np.ndarray) -> list[Nearest]:
        """The registered embedding nearest to each query (rows of `queries`), exactly."""
        count, vectors, norms, users = self._view
        if count == 0:
            return [Nearest(None, float("inf")) for _ in queries]
        queries = np.asarray(queries, np.float32)
        # |v - q|^2 = |v|^2 - 2 v.q + |q|^2: one pass over the rows per face for the ranking, in
        # numpy's own loop on one thread (OpenBLAS's threads, on a machine whose cores are busy
        # with dlib or other work, mostly wait: slower and far less predictable)...
        best = [int(np.argmin(norms[:count] - 2.0 * np.einsum("ij,j->i", vectors[:count], query))) for query in queries]
        # ...and the winner's distance computed directly, in float64.
        return [Nearest(users[i], float(np.linalg.norm(vectors[i].astype(np.float64) - q)))
                for i, q in zip(best, queries.astype(np.float64))]


class FaceStore(abc.ABC):
    """Registrations of one model's embeddings, durable in a database, searched in memory."""
    backend: str
    errors: tuple[type[Exception], ...]   # the database driver's errors: the store is unavailable

    def __init__(self, model: str, size: int, clock: Callable[[], float] = time.time):
        self.model, self.size, self.clock = model, size, clock
        self.index = FaceIndex(size)
        self._refresh_lock = threading.Lock()
        self.last_error: str | None = None

    # --- what each database does --------------------------------------------------------------

    @abc.abstractmethod
    def _transaction(self):
        """A context manager: a transaction, yielding a function execute(sql, params) -> cursor."""

    @abc.abstractmethod
    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of one read outside any transaction."""

    def close(self) -> None:  # noqa: B027 - a store without a connection has nothing to close
        """Close the connection."""

    # --- the face store's operations ----------------------------------------------------------

    def register(self, userid: str, embeddings: Iterable[np.ndarray]) -> bool:
        """Add the embeddings to `userid`, in one transaction; whether the userid was registered before."""
        blobs = [np.asarray(e, dtype="<f4").tobytes() for e in embeddings]
        with self._guard(), self._transaction() as execute:
            generation = execute(BUMP, ()).fetchone()[0]
            existed = execute("SELECT 1 FROM face_embeddings WHERE userid = ? AND model = ? LIMIT 1",
                              (userid, self.model)).fetchone() is not None
            now = self.clock()
            for blob in blobs:
                execute("INSERT INTO face_embeddings (userid, model, embedding, generation, created_at) "
                        "VALUES (?, ?, ?, ?, ?)", (userid, self.model, blob, generation, now))
        return existed

    def delete(self, userid: str) -> int:
        """Delete every embedding of `userid` (of every model), in one transaction; how many."""
        with self._guard(), self._transaction() as execute:
            generation = execute(BUMP, ()).fetchone()[0]
            deleted = execute("DELETE FROM face_embeddings WHERE userid = ?", (userid,)).rowcount
            if deleted:
                execute("UPDATE face_store_state SET purged = ? WHERE id = 1", (generation,))
        return max(deleted, 0)

    def users(self) -> list[tuple[str, int]]:
        """(userid, embeddings) of everyone registered with the current model, by userid."""
        with self._guard():
            rows = self._query("SELECT userid, COUNT(*) FROM face_embeddings WHERE model = ? "
                               "GROUP BY userid ORDER BY userid", (self.model,))
        return [(userid, int(count)) for userid, count in rows]

    def nearest(self, embeddings: np.ndarray) -> list[Nearest]:
        """The nearest registered embedding to each of `embeddings`, as of the latest commit."""
        self.refresh()
        return self.index.nearest(embeddings)

    def refresh(self) -> None:
        """Read what was committed since the index was last read (everything after a deletion)."""
        with self._guard():
            ((generation, purged),) = self._query("SELECT generation, purged FROM face_store_state WHERE id = 1")
            if generation == self.index.generation:
                return
            with self._refresh_lock:
                held = self.index.generation
                if generation == held:
                    return
                whole = purged > held
                rows = self._query("SELECT userid, embedding FROM face_embeddings WHERE model = ? AND generation > ? "
                                   "AND generation <= ? ORDER BY id", (self.model, 0 if whole else held, generation))
                rows = [(userid, bytes(blob)) for userid, blob in rows]
                (self.index.replace if whole else self.index.append)(rows, generation)

    def status(self) -> dict:
        """For /status: the backend, and the faces held (or why the database cannot be read)."""
        info = {"backend": self.backend}
        try:
            self.refresh()
        except FaceStoreUnavailable:
            return {**info, "state": "unavailable", "reason": self.last_error}
        return {**info, "state": "ok", "faces": self.index.count, "users": len(self.index.userids()),
                "model": self.model}

    @contextlib.contextmanager
    def _guard(self):
        """The database's own errors become FaceStoreUnavailable (503); the log names the error's
        type only (a message may quote the database address)."""
        try:
            yield
        except self.errors as exc:
            self.last_error = f"{type(exc).__name__} from the {self.backend} database"
            log.warning("face store: %s", self.last_error)
            self._broken()
            raise FaceStoreUnavailable() from None
        self.last_error = None

    def _broken(self) -> None:  # noqa: B027 - a store whose connection cannot break has nothing to do
        """After a database error: forget the connection, so the next call makes a new one."""


class SqliteFaceStore(FaceStore):
    """SQLite in DATA_DIR: write-ahead log (readers never wait for a writer, and other serving
    processes on the same file see each commit), synchronous=FULL (a commit survives power loss),
    BEGIN IMMEDIATE (writers queue for the write lock, up to the busy timeout)."""
    backend = "sqlite"
    errors = (sqlite3.Error,)

    def __init__(self, path: Path, model: str, size: int, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 30.0):
        super().__init__(model, size, clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction() as execute:
            for statement in SCHEMA:
                execute(statement.format(serial="INTEGER", blob="BLOB"), ())

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db.execute
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
