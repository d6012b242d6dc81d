"""The face store (dataplane/face_store.py, face_postgres.py): exact search against brute force,
what one process writes the others see at once, all-or-nothing registrations under SIGKILL, and
PostgreSQL with two replicas (a real server from Debian's package, on loopback)."""
from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from app import create_app
from config import Settings
from dataplane.face_store import FaceIndex, SqliteFaceStore
from errors import FaceStoreUnavailable
from tests.support.faces import FakeFaceModel, post_form, solid_jpeg
from tests.support.paths import ROOT

RED, BLUE = solid_jpeg((220, 30, 30)), solid_jpeg((30, 30, 220))


def unit_vectors(count: int, size: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, size)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rows(vectors: np.ndarray, prefix: str = "p") -> list[tuple[str, bytes]]:
    return [(f"{prefix}{i}", v.astype("<f4").tobytes()) for i, v in enumerate(vectors)]


def test_the_index_finds_the_nearest_face_exactly():
    stored, queries = unit_vectors(3000), unit_vectors(40, seed=1)
    index = FaceIndex(16)
    assert index.nearest(queries[:1])[0].userid is None
    index.append(rows(stored[:10]), 1)          # grown from empty, then by doubling
    index.append(rows(stored[10:], "q"), 2)
    names = [f"p{i}" for i in range(10)] + [f"q{i}" for i in range(len(stored) - 10)]
    for query, found in zip(queries, index.nearest(queries)):
        distances = np.linalg.norm(stored.astype(np.float64) - query, axis=1)
        assert found.userid == names[int(np.argmin(distances))]
        assert found.distance == pytest.approx(distances.min(), abs=1e-6)
    index.replace(rows(stored[:5]), 3)
    assert index.count == 5 and index.generation == 3 and index.userids() == {f"p{i}" for i in range(5)}


def test_what_one_process_writes_the_others_see_at_their_next_search(tmp_path):
    path = tmp_path / "faces.sqlite3"
    writer, reader = SqliteFaceStore(path, "m", 16), SqliteFaceStore(path, "m", 16)
    vectors = unit_vectors(3)
    assert writer.register("ann", vectors[:2]) is False and writer.register("ann", vectors[2:]) is True
    assert reader.nearest(vectors[2:])[0].userid == "ann" and reader.index.count == 3
    writer.register("bob", unit_vectors(1, seed=5))
    assert reader.nearest(unit_vectors(1, seed=5))[0].userid == "bob" and reader.index.count == 4
    assert writer.delete("ann") == 3 and writer.delete("ann") == 0
    assert reader.nearest(vectors)[0].userid == "bob" and reader.index.count == 1   # read again whole
    assert reader.users() == [("bob", 1)]
    # Another model's embeddings are kept but neither listed nor searched.
    other = SqliteFaceStore(path, "other", 16)
    other.register("carl", vectors[:1])
    assert reader.users() == [("bob", 1)] and reader.nearest(vectors[:1])[0].userid == "bob"
    assert other.delete("carl") == 1


def test_writers_in_several_threads_and_connections_all_land(tmp_path):
    path = tmp_path / "faces.sqlite3"
    stores = [SqliteFaceStore(path, "m", 16) for _ in range(3)]
    errors = []

    def work(store, n):
        try:
            for i in range(20):
                store.register(f"user{i % 4}", unit_vectors(2, seed=n * 100 + i))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(stores[n % 3], n)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stores[0].users() == [(f"user{i}", 60) for i in range(4)]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT generation FROM face_store_state").fetchone() == (120,)


CHILD = """
import sys, numpy as np
from dataplane.face_store import SqliteFaceStore
store = SqliteFaceStore(sys.argv[1], "m", 128)
rng = np.random.default_rng(int(sys.argv[2]))
out = sys.stdout
n = 0
while True:
    n += 1
    userid = f"u{sys.argv[2]}-{n}"
    out.write("B"); out.flush()
    store.register(userid, rng.normal(size=(400, 128)))
    out.write("C"); out.flush()
    if n % 3 == 0:
        out.write("B"); out.flush()
        store.delete(userid)
        out.write("C"); out.flush()
"""


@pytest.mark.slow
def test_a_process_killed_mid_registration_leaves_all_of_it_or_none(tmp_path):
    """A child registers 400 embeddings per userid (and deletes every third userid), each one
    transaction, and is killed with SIGKILL at a random moment, over and over on one database:
    every userid has all 400 rows or none, and the database checks out."""
    path = tmp_path / "faces.sqlite3"
    mid_transaction = 0
    for round_ in range(12):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(round_)], cwd=ROOT,
                                 stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert child.stdout.read(2) == b"BC"          # one registration committed: it is running
        time.sleep(random.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        mid_transaction += child.stdout.read().endswith(b"B")
        child.stdout.close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            counts = db.execute("SELECT userid, COUNT(*) FROM face_embeddings GROUP BY userid").fetchall()
            assert counts and {count for _, count in counts} == {400}, counts
            generation, = db.execute("SELECT generation FROM face_store_state").fetchone()
            assert generation >= db.execute("SELECT MAX(generation) FROM face_embeddings").fetchone()[0]
    print(f"{mid_transaction} of 12 kills landed inside a transaction")
    assert mid_transaction >= 3
    store = SqliteFaceStore(path, "m", 128)   # and the store reads it all
    assert store.index.count == 0 and len(store.nearest(unit_vectors(1, 128))) == 1
    assert store.index.count == 400 * len(store.users())


# --- PostgreSQL: several replicas ---------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres():
    from tests.support.postgres_server import PostgresServer
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def replica(tmp_path):
    """A factory of apps on one DATABASE_URL (replicas); their connections are closed afterwards."""
    apps = []

    def make(url: str):
        apps.append(create_app(Settings(face_enabled=True, database_url=url, data_dir=tmp_path / "unused",
                                        models_dir=tmp_path), face=FakeFaceModel()))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["faces"].store.close()


@pytest.mark.slow
def test_two_replicas_share_one_postgres_face_store(replica, postgres, caplog):
    caplog.set_level(logging.INFO)
    one, two = replica(postgres.url).test_client(), replica(postgres.url).test_client()
    for client in (one, two):   # a fresh database per test: the tables of the previous test are emptied
        for userid in client.post("/v1/vision/face/list").get_json()["faces"]:
            post_form(client, "/v1/vision/face/delete", userid=userid)
    assert post_form(one, "/v1/vision/face/register", [("image", "a.jpg", RED)], userid="alice").status_code == 200
    named = post_form(two, "/v1/vision/face/recognize", [("image", "a.jpg", RED)]).get_json()["predictions"]
    assert named[0]["userid"] == "alice"                                    # at once, on the other replica
    assert post_form(two, "/v1/vision/face/register", [("image", "b.jpg", BLUE)], userid="bob").get_json()["message"] == "face added"
    assert one.post("/v1/vision/face/list").get_json()["faces"] == ["alice", "bob"]
    assert post_form(two, "/v1/vision/face/delete", userid="alice").get_json()["deleted"] == 1
    assert post_form(one, "/v1/vision/face/recognize", [("image", "a.jpg", RED)]).get_json()["predictions"][0]["userid"] == "unknown"
    status = one.get("/status").get_json()["face_store"]
    assert status == {"backend": "postgresql", "state": "ok", "faces": 1, "users": 1, "model": "fake_faces"}
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in str(one.get("/status").get_json())


@pytest.mark.slow
def test_concurrent_registrations_through_both_replicas(replica, postgres):
    apps = [replica(postgres.url) for _ in range(2)]
    answers = []

    def one(n):
        client = apps[n % 2].test_client()
        answers.append(post_form(client, "/v1/vision/face/register", [("image", "a.jpg", RED)], userid="crowd").get_json())

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["message"] for a in answers) == ["face added"] + ["face updated"] * 7
    store = apps[1].extensions["faces"].store
    assert ("crowd", 8) in store.users()
    store.delete("crowd")


@pytest.mark.slow
def test_postgres_down_is_503_then_back_without_a_restart(replica, postgres):
    client = replica(postgres.url).test_client()
    post_form(client, "/v1/vision/face/register", [("image", "a.jpg", RED)], userid="dora")
    postgres.stop()
    try:
        for response in (post_form(client, "/v1/vision/face/recognize", [("image", "a.jpg", RED)]),
                         post_form(client, "/v1/vision/face/register", [("image", "a.jpg", RED)], userid="dora")):
            assert response.status_code == 503 and response.get_json()["success"] is False
        assert client.get("/status").get_json()["face_store"]["state"] == "unavailable"
        assert client.get("/health").status_code == 200
    finally:
        postgres.start()
    assert post_form(client, "/v1/vision/face/recognize", [("image", "a.jpg", RED)]).get_json()["predictions"][0]["userid"] == "dora"
    assert post_form(client, "/v1/vision/face/delete", userid="dora").get_json()["deleted"] == 1


def test_an_unreachable_database_is_a_503_not_a_start_failure(replica):
    from tests.support.servers import free_port
    client = replica(f"postgresql://u:pw@127.0.0.1:{free_port()}/db").test_client()
    response = client.post("/v1/vision/face/list")
    assert response.status_code == 503 and "pw@" not in response.get_data(as_text=True)
    with pytest.raises(FaceStoreUnavailable):
        client.application.extensions["faces"].store.users()
