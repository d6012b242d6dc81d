"""The shared cache and report in a real Redis (redis-server on a free loopback port, started by
these tests), and the service surviving its loss: down, hung, full, flushed, speaking garbage.

Replicas are two apps built from the same settings in this process (fast), and, in the slow
tests, two `python app.py` processes with the real small TFLite classifier from ../shared.
"""
from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import os
import pickle
import random
import socket
import subprocess
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis
import requests

from config import ConfigError, Settings
from contract import CLASSIFICATION, DETECTION, Detection
from dataplane.report import MAX_IMAGES, UsageReport
from dataplane.shared_cache import MAX_VALUE_BYTES, SharedResultCache, decode, encode
from dataplane.shared_report import SharedUsageReport
from dataplane.shared_store import SharedStore
from tests.support import imaging
from tests.support.http import make_app, post_images
from tests.support.redis_server import RedisServer, require_redis_server
from tests.support.servers import free_port, start_server, wait_until
from tests.support.shared_models import build_folder, photo

RED = imaging.jpeg(size=(40, 30), color=(250, 10, 10))
BLUE = imaging.png(size=(20, 10), color=(10, 10, 250))
GREEN = imaging.jpeg(size=(30, 30), color=(10, 240, 10))
SECRET = "s3cret-Pa55"


@pytest.fixture
def server(tmp_path):
    started = RedisServer(tmp_path / "redis").start()
    yield started
    started.kill()


@pytest.fixture
def client_of(server):
    return redis.Redis.from_url(server.url, socket_timeout=5)


def replica(tmp_path, url, name="a", **settings):
    """One replica: an app with fake instant models and REDIS_URL; `settings` override."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return make_app(folder, redis_url=url, **settings).test_client()


def metric(client, name: str) -> dict[str, float]:
    values = {}
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name):
            labels, value = line.rsplit(" ", 1)
            values[labels] = float(value)
    return values


# --- sharing ---------------------------------------------------------------------------------

def test_two_replicas_share_hits_and_one_report(tmp_path, server):
    a, b = replica(tmp_path, server.url, "a"), replica(tmp_path, server.url, "b")
    first = post_images(a, "/v2/classify?top_k=3", RED).get_json()
    again = post_images(b, "/v2/classify?top_k=3", RED).get_json()
    assert first["cached"] is False and again["cached"] is True
    assert again["results"][0]["predictions"] == first["results"][0]["predictions"]
    assert (again["results"][0]["width"], again["results"][0]["height"]) == (40, 30)
    detected = post_images(b, "/v2/detect", BLUE).get_json()
    assert post_images(a, "/v2/detect", BLUE).get_json()["results"] == [
        {**detected["results"][0], "cached": True}]
    assert post_images(a, "/v2/classify?top_k=2", RED).get_json()["cached"] is False  # other parameters
    assert a.post("/classify-image", data={"image": (io.BytesIO(RED), "r.jpg")}).status_code == 200

    report = b.get("/report").get_json()
    assert report["shared"] is True and report["partial"] is False
    top = report["images"][0]
    assert (top["num_requested"], top["num_cache_hits"]) == (4, 1)  # v2 ×3 and v1, from both replicas
    assert report["distinct_images"] == 2
    assert report["models"]["fake_classifier"]["num_requested"] == 4
    assert report["routes"]["/v2/detect"] == {**report["routes"]["/v2/detect"], "num_requested": 2, "num_cache_hits": 1}
    assert a.get("/report").get_json()["images"] == report["images"]
    assert metric(a, "shared_store_available") == {"shared_store_available": 1.0}
    assert a.get("/status").get_json()["shared_store"]["available"] is True


def test_values_round_trip_with_their_exact_types():
    key = (CLASSIFICATION, "m", 5, "sha256:ab")
    rows = [("Egyptian_cat", "n02124075", 0.8213), ("tabby", np.int64(281), np.float32(0.25)), ("x", 3, 0)]
    width, height, back = decode(encode(key, (640, 480, rows)), key)
    assert (width, height) == (640, 480)
    assert back == [("Egyptian_cat", "n02124075", 0.8213), ("tabby", 281, 0.25), ("x", 3, 0.0)]
    assert [tuple(map(type, row)) for row in back] == [(str, str, float), (str, int, float), (str, int, float)]

    key = (DETECTION, "yolo", 0.3, None, frozenset({"dog", "cat"}), "https://example.com/a b.jpg?x=1")
    found = [Detection("dog", np.float64(0.94), (np.int64(131), 219, 309, 541)), Detection("cat", 0.5, (0, 0, 1, 1))]
    _, _, back = decode(encode(key, (768, 576, found)), key)
    assert back == [Detection("dog", 0.94, (131, 219, 309, 541)), Detection("cat", 0.5, (0, 0, 1, 1))]
    assert all(type(d) is Detection and type(d.score) is float and type(d.box) is tuple
               and all(type(v) is int for v in d.box) for d in back)
    # The same key with the set written in another order is the same Redis key.
    same = (DETECTION, "yolo", 0.3, None, frozenset(["cat", "dog"]), "https://example.com/a b.jpg?x=1")
    store = SharedStore("redis://127.0.0.1:1/0")
    assert SharedResultCache(store, 60).redis_key(key) == SharedResultCache(store, 60).redis_key(same)
    assert SharedResultCache(store, 60).redis_key(key).startswith("ics:cache:")


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/redis-test-pickle-ran", "w"))


GARBAGE = {
    "not json": b"\x80\x81\x82 not json",
    "pickle": pickle.dumps(_Boom()),
    "a list": b"[]",
    "no result": b'{"format": 1}',
    "wrong key": None,  # a valid value, copied from another image's key
    "bad rows": None,   # the right key, rows of the wrong shape
    "nan score": None,
    "too large": None,
}


def _garbage(kind: str, good: dict, other: bytes) -> bytes:
    if GARBAGE[kind] is not None:
        return GARBAGE[kind]
    if kind == "wrong key":
        return other
    body = dict(good)
    if kind == "bad rows":
        body["result"] = [["red", True, 0.9]]
    elif kind == "nan score":
        return json.dumps({**good, "result": [["red", 0, float("nan")]]}).encode()
    else:
        body["result"] = [["x" * 1000, 0, 0.5]] * (MAX_VALUE_BYTES // 1000 + 10)
    return json.dumps(body).encode()


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_under_our_keys_is_a_miss_never_trusted(tmp_path, server, client_of, kind):
    a = replica(tmp_path, server.url)
    good_answer = post_images(a, "/v2/classify", RED).get_json()
    post_images(a, "/v2/classify", BLUE)
    cache = SharedResultCache(SharedStore(server.url), 60)
    red_key, blue_key = (cache.redis_key((CLASSIFICATION, "fake_classifier", 5, "sha256:" + hashlib.sha256(image).hexdigest()))
                         for image in (RED, BLUE))
    client_of.set(red_key, _garbage(kind, json.loads(client_of.get(red_key)), client_of.get(blue_key)))

    answer = post_images(a, "/v2/classify", RED).get_json()
    assert answer["cached"] is False and answer["results"] == good_answer["results"]  # computed again
    assert post_images(a, "/v2/classify", RED).get_json()["cached"] is True  # and stored again, properly
    assert metric(a, "shared_store_errors_total")['shared_store_errors_total{kind="garbage",operation="cache_get"}'] == 1
    assert not os.path.exists("/tmp/redis-test-pickle-ran")


# Entries an attacker with write access to Redis stores under our keys: each of the right
# shape, each something the model could never have answered. Per task: (name, change to the body).
POISONED_CLASSIFICATIONS = {
    "a made-up label": lambda body: body["result"][0].__setitem__(0, "<img src=x onerror=alert(1)>"),
    "a score of -500%": lambda body: body["result"][0].__setitem__(2, -5.0),
    "a score of 1e308": lambda body: body["result"][0].__setitem__(2, 1e308),
    "no rows": lambda body: body.__setitem__("result", []),
    "another label's class id": lambda body: body["result"][0].__setitem__(1, 2 if body["result"][0][1] != 2 else 0),
    "rows past top_k": lambda body: body.__setitem__("result", body["result"] * 4),
    "a 250k-character label": lambda body: body["result"][0].__setitem__(0, "x" * 250_000),
}
POISONED_DETECTIONS = {
    "a made-up label": lambda body: body["result"][0].__setitem__(0, "<img src=x onerror=alert(1)>"),
    "a score of -500%": lambda body: body["result"][0].__setitem__(1, -5.0),
    "a score of 1e308": lambda body: body["result"][0].__setitem__(1, 1e308),
    "a box of 1e30": lambda body: body["result"][0].__setitem__(2, [0, 0, 10**30, 10**30]),
    "an inverted box": lambda body: body["result"][0].__setitem__(2, [20, 15, 0, 0]),
    "a box past the image": lambda body: body["result"][0].__setitem__(2, [0, 0, body["width"] + 1, 1]),
    "a score under min_score": lambda body: body["result"][-1].__setitem__(1, 0.01),
    "6,000 rows": lambda body: body.__setitem__("result", body["result"][:1] * 6000),
}
IMAGE_KEY = "sha256:" + hashlib.sha256(RED).hexdigest()
# Route -> the cache key its answer for RED is stored under (v1 and v2 detection share one).
CLASSIFY_ROUTES = {"/v2/classify": 5, "/classify-image": 10, "/v1/vision/scene": 1}
DETECT_ROUTES = ("/v2/detect", "/detect-objects", "/v2/detect?annotate=true")


def answer(client, route: str):
    """The parts of the route's answer that do not change between two requests."""
    response = post_images(client, route, RED)
    assert response.status_code == 200, response.get_data()
    if response.mimetype == "image/jpeg":
        return response.headers["X-Detections"], response.data
    text = response.get_data(as_text=True)
    assert "Infinity" not in text and "NaN" not in text and "onerror" not in text
    body = response.get_json()
    if route.startswith("/v1/vision/"):
        return body["label"], body["confidence"]
    return body["results"] if route.startswith("/v2/") else body


def poison_each_route(tmp_path, url, client_of, routes: dict, poison) -> None:
    """Per route: its answer computed and stored, then poisoned in Redis, then asked again:
    computed again, the same, and the garbage counted."""
    a = replica(tmp_path, url)
    store = SharedResultCache(SharedStore(url), 60)
    for n, (route, key) in enumerate(routes.items(), 1):
        computed = answer(a, route)
        name = store.redis_key(key)
        body = json.loads(client_of.get(name))
        poison(body)
        client_of.set(name, json.dumps(body))
        assert answer(a, route) == computed  # "cached": false where the route says it
        garbage = metric(a, "shared_store_errors_total")['shared_store_errors_total{kind="garbage",operation="cache_get"}']
        assert garbage == n
        assert json.loads(client_of.get(name))["result"] != body["result"]  # stored again, properly


@pytest.mark.parametrize("poison", list(POISONED_CLASSIFICATIONS))
def test_a_poisoned_classification_in_redis_is_a_miss_on_every_route(tmp_path, server, client_of, poison):
    routes = {route: (CLASSIFICATION, "fake_classifier", top_k, IMAGE_KEY) for route, top_k in CLASSIFY_ROUTES.items()}
    poison_each_route(tmp_path, server.url, client_of, routes, POISONED_CLASSIFICATIONS[poison])


@pytest.mark.parametrize("poison", list(POISONED_DETECTIONS))
def test_a_poisoned_detection_in_redis_is_a_miss_on_every_route(tmp_path, server, client_of, poison):
    routes = {route: (DETECTION, "fake_detector", 0.3, None, None, IMAGE_KEY) for route in DETECT_ROUTES}
    poison_each_route(tmp_path, server.url, client_of, routes, POISONED_DETECTIONS[poison])


def test_a_key_of_another_type_and_garbage_in_the_report_are_ignored(tmp_path, server, client_of):
    a = replica(tmp_path, server.url)
    post_images(a, "/v2/classify", RED)
    (key,) = client_of.scan_iter("ics:cache:*")
    client_of.delete(key)
    client_of.rpush(key, "not", "a", "string")  # GET answers WRONGTYPE
    assert post_images(a, "/v2/classify", RED).status_code == 200
    for name in client_of.scan_iter("ics:report:*"):
        if client_of.type(name) == b"hash":
            for field in client_of.hkeys(name):
                client_of.hset(name, field, "garbage 1 2")
    client_of.zadd("ics:report:buckets", {"not-a-bucket": 1e12})
    report = a.get("/report").get_json()
    assert report["images"] == [] and report["models"] == {} and report["shared"] is True
    post_images(a, "/v2/classify", BLUE)  # a record over garbage replaces it
    report = a.get("/report").get_json()
    assert report["models"]["fake_classifier"]["num_requested"] == 1
    assert a.get("/status").get_json()["shared_store"]["available"] is True


def honest_report(tmp_path, url):
    """A replica that has classified RED twice and BLUE once, and its report."""
    a = replica(tmp_path, url)
    for image in (RED, RED, BLUE):
        post_images(a, "/v2/classify", image)
    return a, a.get("/report").get_json()


@pytest.mark.slow  # writing the 50,000 buckets takes most of its 2 s
def test_buckets_from_the_future_are_pruned_not_read(tmp_path, server, client_of):
    """The attack: 50,000 bucket numbers past now in the bucket index (each with a model entry):
    never pruned by time, each read on every /report (66-93 s)."""
    a, honest = honest_report(tmp_path, server.url)
    now = int(time.time() // 60)
    future = range(now + 2, now + 50_002)
    client_of.zadd("ics:report:buckets", {str(bucket): bucket for bucket in future})
    client_of.zadd("ics:report:buckets", {f"0{now}": now, "not-a-bucket": now, str(now + 10**6): now})  # not ours
    pipe = client_of.pipeline(transaction=False)
    for bucket in future:
        pipe.hset(f"ics:report:{bucket}:model", "fake_classifier", "1 0 0 1 0.5 0.5 0.5")
    pipe.execute()
    started = time.perf_counter()
    report = a.get("/report").get_json()
    assert time.perf_counter() - started < 2
    assert report == honest
    assert [int(b) for b in client_of.zrange("ics:report:buckets", 0, -1)] == [now]
    # The image index filled with keys from the future: a new image still gets its entries.
    client_of.zadd("ics:report:images", {f"sha256:{i:064x}": now + 10**6 for i in range(MAX_IMAGES)})
    post_images(a, "/v2/classify", GREEN)
    green = "sha256:" + hashlib.sha256(GREEN).hexdigest()
    assert green in [image["key"] for image in a.get("/report").get_json()["images"]]
    assert client_of.zcard("ics:report:images") == 3


def test_numbers_we_never_write_are_not_added_up(tmp_path, server, client_of):
    """Two entries of 1e308 seconds summed to "processing_time_mean": Infinity (not JSON)."""
    a, honest = honest_report(tmp_path, server.url)
    now = int(time.time() // 60)
    hostile = ["1 0 0 1 1e308 1e308 1e308", "1 0 0 1 1e308 1e308 1e308",  # one image taking 1e308 s
               "9007199254740993 0 0 0 0 -1 -1",  # a count past 2**53
               "1 0 0 1 0.5 0.9 0.1",             # minimum over maximum
               "2 0 0 2 50 0.1 0.2",              # a sum two times in [0.1, 0.2] cannot make
               "1 5 0 0 0 -1 -1",                 # more hits than requests
               "-1 0 0 0 0 -1 -1", "1 0 0 1 inf 0.1 0.2", "1 0 0 1 nan 0.1 0.2"]
    for n, packed in enumerate(hostile):
        bucket = now - 1 - n
        client_of.zadd("ics:report:buckets", {str(bucket): bucket})
        for group, name in (("model", "fake_classifier"), ("route", "/v2/classify")):
            client_of.hset(f"ics:report:{bucket}:{group}", name, packed)
    response = a.get("/report")
    assert "Infinity" not in response.get_data(as_text=True) and "NaN" not in response.get_data(as_text=True)
    assert response.get_json() == honest


def test_names_we_never_write_are_not_shown(tmp_path, server, client_of):
    """Any text in the report's hashes and sets used to be shown as a model, a route or an image."""
    a, honest = honest_report(tmp_path, server.url)
    now = int(time.time() // 60)
    bad = ["<img src=x onerror=alert(1)>", "x" * 5000, "Fake_Classifier", "sha256:" + "A" * 64, "url:" + "0" * 63, "é"]
    for name in bad:
        client_of.zadd(f"ics:report:{now}:requests", {name: 10**9})  # the top of the list
        for group in ("image", "model", "route"):
            client_of.hset(f"ics:report:{now}:{group}", name, "1 0 0 1 0.5 0.5 0.5")
    report = a.get("/report").get_json()
    assert report["models"] == honest["models"] and report["routes"] == honest["routes"]
    assert report["images"] == [] or {i["key"] for i in report["images"]} <= {i["key"] for i in honest["images"]}
    assert "onerror" not in a.get("/report").get_data(as_text=True)


def test_prefix_ttl_and_cache_off(tmp_path, server, client_of):
    a = replica(tmp_path, server.url, "a", cache_prefix="team-a", cache_ttl=120)
    b = replica(tmp_path, server.url, "b", cache_prefix="team-b")
    post_images(a, "/v2/classify", RED)
    assert post_images(b, "/v2/classify", RED).get_json()["cached"] is False  # another deployment
    assert b.get("/report").get_json()["models"]["fake_classifier"]["num_requested"] == 1
    names = [k.decode() for k in client_of.scan_iter("*")]
    assert names and all(n.startswith(("team-a:", "team-b:")) for n in names)
    (cached,) = client_of.scan_iter("team-a:cache:*")
    assert 0 < client_of.ttl(cached) <= 120
    assert all(0 < client_of.ttl(k) <= 259200 + 120 for k in client_of.scan_iter("team-a:report:*"))
    off = replica(tmp_path, server.url, "c", cache_prefix="off", cache_maxsize=0)
    post_images(off, "/v2/classify", RED)
    assert post_images(off, "/v2/classify", RED).get_json()["cached"] is False
    assert list(client_of.scan_iter("off:cache:*")) == []


# --- the report: the same numbers as in memory ------------------------------------------------

def test_shared_report_equals_the_in_memory_report(server):
    now = [1_000_000.0]
    clock = lambda: now[0]
    memory = UsageReport(window=3600, top_n=3, clock=clock)
    shared = SharedUsageReport(SharedStore(server.url, prefix="eq"), window=3600, top_n=3, clock=clock)
    rng = random.Random(7)
    keys = [kind + ":" + hashlib.sha256(name.encode()).hexdigest()
            for kind, name in (("sha256", "a"), ("sha256", "b"), ("url", "https://例え.jp/猫 1.jpg"), ("url", "c"),
                               ("sha256", "d"))] + [None]
    for step in range(400):
        record = dict(image_key=rng.choice(keys), model=rng.choice(["m1", "m2"]), route=rng.choice(["/a", "/b"]),
                      seconds=rng.choice([None, rng.random()]), cache_hit=rng.random() < 0.3, error=rng.random() < 0.1)
        memory.record(**record)
        shared.record(**record)
        now[0] += rng.choice([0.5, 5, 40, 200])
        if step % 50 == 49:
            expected = memory.snapshot()
            got = shared.snapshot()
            assert (got.pop("shared"), got.pop("partial")) == (True, False)
            assert got == expected


def test_the_series_counts_every_replicas_requests_per_minute_from_the_route_hashes(tmp_path, server, client_of):
    """"series" in Redis: the last 60 minutes' route hashes added up, minute by minute, for every
    replica; entries we never write (a name of another shape, numbers out of range) and minutes
    older than the hour do not count."""
    a, b = replica(tmp_path, server.url, "a"), replica(tmp_path, server.url, "b")
    post_images(a, "/v2/classify", RED)
    post_images(b, "/v2/detect", BLUE)
    post_images(b, "/v2/classify", RED, b"not an image")
    now = int(time.time() // 60)
    for bucket, name, packed in ((now - 30, "/v2/classify", "2 0 1 1 0.5 0.5 0.5"),   # honest, half an hour ago
                                 (now - 70, "/v2/classify", "4 0 0 4 2.0 0.5 0.5"),   # honest, before the hour
                                 (now - 20, "<img src=x>", "5 0 0 0 0 -1 -1"),        # not a route of ours
                                 (now - 10, "/v2/detect", "1 5 0 0 0 -1 -1")):        # more hits than requests
        client_of.zadd("ics:report:buckets", {str(bucket): bucket})
        client_of.hset(f"ics:report:{bucket}:route", name, packed)
    report = a.get("/report").get_json()
    series = report["series"]
    assert len(series["minutes"]) == 60 and series["minutes"][-1] in (now, now + 1)
    assert series["minutes"] == list(range(series["minutes"][0], series["minutes"][0] + 60))
    at = dict(zip(series["minutes"], zip(series["requests"], series["errors"])))
    assert at[now - 30] == (2, 1) and at[now - 20] == at[now - 10] == (0, 0)
    assert (sum(series["requests"]), sum(series["errors"])) == (4 + 2, 1 + 1)
    assert report["routes"]["/v2/classify"]["num_requested"] == 3 + 2 + 4
    other = b.get("/report").get_json()["series"]   # the other replica: the same minutes (a minute may have turned)
    assert {m: at[m] for m in other["minutes"] if m in at} == \
        {m: (r, e) for m, r, e in zip(other["minutes"], other["requests"], other["errors"]) if m in at}


# --- the report's size: what a client can make it hold ----------------------------------------

# docs/operations.md, Shared cache and report: in Redis, about 600 bytes per image (its index entry and one minute's
# entries), at most MAX_IMAGES images: about 60 MB (here with a few per cent of slack).
REDIS_BOUND = 64_000_000


def refused_urls(request: int) -> dict:
    """The attack: 16 long image URLs per request, each a new one, that the service refuses to
    fetch (loopback): each answer is 200 with 16 per-image 400s."""
    return {"images": [{"image_url": f"http://127.0.0.1:9/{request}-{i}/" + "a" * 3990} for i in range(16)]}


def replay(client, first: int, count: int) -> None:
    for n in range(first, first + count):
        response = client.post("/v2/classify", json=refused_urls(n))
        assert response.status_code == 200
        assert {r["error"]["type"] for r in response.get_json()["results"]} == {"image_url_unavailable"}


def used_memory(client) -> int:
    return client.info("memory")["used_memory"]


def traced_after(client, first: int, count: int) -> int:
    replay(client, first, count)
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.slow
@pytest.mark.parametrize("redis_mode", [False, True], ids=["memory", "redis"])
def test_refused_urls_add_no_image_key_and_no_memory(tmp_path, server, client_of, redis_mode):
    a = replica(tmp_path, server.url if redis_mode else "")
    replay(a, 0, 20)  # warm: the first requests' own allocations are not the report's
    tracemalloc.start()
    try:
        # The first traced requests refill bounded caches of the last few URLs (urllib's urlsplit).
        before = traced_after(a, 20, 20)
        redis_before = used_memory(client_of)
        after = traced_after(a, 40, 60)  # 960 URLs of 4 KB: 4 MB in memory, 8 MB in Redis when each was a key
    finally:
        tracemalloc.stop()
    response = a.get("/report")
    report = response.get_json()
    assert report["distinct_images"] == 0 and report["images"] == []
    counted = report["routes"]["/v2/classify"]
    assert counted["num_requested"] == counted["num_errors"] == 100 * 16  # still counted, per route and model
    assert report["models"]["fake_classifier"]["num_errors"] == 100 * 16
    assert "aaaa" not in response.get_data(as_text=True)
    assert after - before < 200_000, (before, after)
    assert used_memory(client_of) - redis_before < 200_000
    assert client_of.zcard("ics:report:images") == 0
    assert not any(b"aaaa" in name for name in client_of.scan_iter("*"))


def test_the_report_in_redis_holds_at_most_its_cap_of_images(server, client_of):
    """Each image costs the same few hundred bytes up to the cap; past it, a new image counts for
    its model and route only, and Redis does not grow."""
    cap = 2_000
    report = SharedUsageReport(SharedStore(server.url, fast_timeout=5), window=3 * 86400, top_n=10,
                               clock=lambda: 1_000_000.0, max_keys=cap)
    record = lambda i: report.record(image_key="sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
                                     model="m", route="/r", seconds=0.05)
    report.record(image_key=None, model="m", route="/r", seconds=0.05)  # the model and route entries
    empty = used_memory(client_of)
    for i in range(cap):
        record(i)
    at_cap = used_memory(client_of)
    for i in range(cap, 2 * cap):
        record(i)
    per_image = (at_cap - empty) / cap
    assert per_image * MAX_IMAGES <= REDIS_BOUND, f"{per_image:.0f} bytes per image"
    assert used_memory(client_of) - at_cap < 0.1 * (at_cap - empty)
    assert client_of.zcard("ics:report:images") == cap and report.fallback.empty
    snapshot = report.snapshot()
    assert snapshot["distinct_images"] == cap and snapshot["models"]["m"]["num_requested"] == 2 * cap + 1


# --- faults ----------------------------------------------------------------------------------

def test_redis_down_every_request_is_answered_and_it_is_said_once(tmp_path, server, caplog):
    a = replica(tmp_path, server.url)
    post_images(a, "/v2/classify", RED)
    server.kill()
    caplog.set_level(logging.INFO, logger="image_service.shared_store")
    started = time.perf_counter()
    for _ in range(20):
        response = post_images(a, "/v2/classify", RED, BLUE)
        assert response.status_code == 200 and response.get_json()["cached"] is False
        assert post_images(a, "/v2/detect", GREEN).status_code == 200
    assert time.perf_counter() - started < 5  # no request waits for the dead Redis
    assert a.get("/health").status_code == 200 and a.get("/ready").status_code in (200, 503)
    status = a.get("/status").get_json()["shared_store"]
    assert status["available"] is False and status["last_error"] == "ConnectionError"
    assert metric(a, "shared_store_available") == {"shared_store_available": 0.0}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    report = a.get("/report").get_json()
    assert (report["shared"], report["partial"]) == (False, True)
    assert report["models"]["fake_classifier"]["num_requested"] == 40  # this replica's slice, from memory


def test_redis_restarted_is_used_again_and_gets_the_missed_counts(tmp_path, server, caplog):
    a = replica(tmp_path, server.url)
    server.kill()
    for _ in range(3):
        assert post_images(a, "/v2/classify", RED).get_json()["cached"] is False
    server.start()
    caplog.set_level(logging.INFO, logger="image_service.shared_store")
    wait_until(lambda: post_images(a, "/v2/classify", RED).get_json()["cached"], 10, "hits after the restart")
    assert a.get("/status").get_json()["shared_store"]["available"] is True
    assert any("available again" in r.getMessage() for r in caplog.records)
    report = a.get("/report").get_json()
    assert (report["shared"], report["partial"]) == (True, False)
    assert report["images"][0]["num_requested"] >= 5 and report["images"][0]["num_cache_hits"] == 1


def test_hung_redis_costs_at_most_its_timeout(tmp_path, server):
    a = replica(tmp_path, server.url)
    post_images(a, "/v2/classify", RED)
    server.pause()
    try:
        durations = []
        for _ in range(10):
            started = time.perf_counter()
            assert post_images(a, "/v2/classify", RED).status_code == 200
            durations.append(time.perf_counter() - started)
        assert max(durations) < 1.0 and sorted(durations)[5] < 0.2
        assert a.get("/status").get_json()["shared_store"]["last_error"] == "TimeoutError"
        started = time.perf_counter()
        assert a.get("/report").status_code == 200
        assert time.perf_counter() - started < 3
    finally:
        server.resume()
    wait_until(lambda: post_images(a, "/v2/classify", RED).get_json()["cached"], 10, "hits after the pause")


def test_full_redis_refuses_writes_and_nothing_fails(tmp_path, server, client_of):
    a = replica(tmp_path, server.url)
    post_images(a, "/v2/classify", RED)
    client_of.config_set("maxmemory-policy", "noeviction")
    client_of.config_set("maxmemory", "1")
    for image in (BLUE, GREEN, BLUE):
        response = post_images(a, "/v2/classify", image)
        assert response.status_code == 200 and response.get_json()["cached"] is False
    assert post_images(a, "/v2/classify", RED).get_json()["cached"] is True  # reads still work
    assert metric(a, "shared_store_errors_total")['shared_store_errors_total{kind="refused",operation="cache_put"}'] >= 2
    assert a.get("/status").get_json()["shared_store"]["last_error"] == "OutOfMemoryError"
    assert a.get("/report").get_json()["partial"] is True  # the refused records wait in memory
    client_of.config_set("maxmemory", "64mb")
    post_images(a, "/v2/classify", RED)
    report = a.get("/report").get_json()
    assert report["partial"] is False and report["models"]["fake_classifier"]["num_requested"] == 6


def test_flushed_redis_is_a_cold_cache(tmp_path, server, client_of):
    a = replica(tmp_path, server.url)
    post_images(a, "/v2/classify", RED)
    client_of.flushall()
    client_of.script_flush()
    assert post_images(a, "/v2/classify", RED).get_json()["cached"] is False
    assert post_images(a, "/v2/classify", RED).get_json()["cached"] is True
    report = a.get("/report").get_json()
    assert report["images"][0]["num_requested"] == 2 and report["partial"] is False


def test_a_server_speaking_garbage_is_not_redis(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(b"?\x00\xff garbage\r\n" * 3)
            conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        a = replica(tmp_path, f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        for _ in range(5):
            assert post_images(a, "/v2/classify", RED).status_code == 200
        assert a.get("/report").status_code == 200
        assert a.get("/status").get_json()["shared_store"]["available"] is False
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_the_circuit_tries_one_call_after_its_backoff():
    now = [0.0]
    calls = []
    store = SharedStore("redis://127.0.0.1:1/0", backoff=(1.0, 4.0), clock=lambda: now[0])

    def failing(client):
        calls.append(now[0])
        raise redis.ConnectionError("refused")
    for _ in range(5):
        assert store.run("op", failing, "default") == "default"
    assert calls == [0.0] and not store.available  # opened at the first failure
    for wait, expected in ((1.0, 2), (2.0, 3), (4.0, 4), (4.0, 5)):  # 1 s, doubling, at most 4 s
        now[0] += wait - 0.01
        store.run("op", failing, None)
        assert len(calls) == expected - 1
        now[0] += 0.01
        store.run("op", failing, None)
        store.run("op", failing, None)
        assert len(calls) == expected
    now[0] += 4
    assert store.run("op", lambda client: "answer", None) == "answer" and store.available
    assert store.status()["available"] is True and store.status()["last_error"] == "ConnectionError"


def test_a_lone_time_out_is_counted_three_in_a_row_open_the_circuit():
    errors = []
    store = SharedStore("redis://127.0.0.1:1/0", on_error=lambda operation, kind: errors.append(kind))

    def slow(client):
        raise redis.TimeoutError("timed out")
    for _ in range(2):
        store.run("op", slow, None)
    assert store.available and errors == ["timeout", "timeout"]
    store.run("op", lambda client: 1, None)  # a success: the count starts again
    for _ in range(2):
        store.run("op", slow, None)
    assert store.available
    store.run("op", slow, None)
    assert not store.available and errors[-1] == "unavailable"
    assert store.status()["last_error"] == "TimeoutError"


# --- secrets and configuration ---------------------------------------------------------------

def test_password_from_the_environment_or_the_url_and_never_shown(tmp_path, caplog):
    server = RedisServer(tmp_path / "redis", "--requirepass", SECRET).start()
    try:
        caplog.set_level(logging.INFO)
        with_env = replica(tmp_path, server.url, "a", redis_password=SECRET)
        in_url = replica(tmp_path, server.url.replace("//", f"//:{SECRET}@"), "b")
        wrong = replica(tmp_path, server.url, "c", redis_password="wrong")
        post_images(with_env, "/v2/classify", RED)
        assert post_images(in_url, "/v2/classify", RED).get_json()["cached"] is True
        assert post_images(wrong, "/v2/classify", RED).get_json()["cached"] is False
        assert wrong.get("/status").get_json()["shared_store"]["available"] is False
        shown = [c.get(p).get_data(as_text=True) for c in (with_env, in_url, wrong)
                 for p in ("/status", "/metrics", "/report", "/openapi.json")]
        shown += [r.getMessage() for r in caplog.records]
        shown.append(repr(Settings(redis_url=server.url.replace("//", f"//:{SECRET}@"), redis_password=SECRET)))
        assert not any(SECRET in text for text in shown)
    finally:
        server.kill()


def test_redis_url_is_checked_without_echoing_it():
    assert Settings.from_env({"REDIS_URL": "rediss://:pw@cache.service.consul:6380/2",
                              "CACHE_PREFIX": "team-a"}).cache_prefix == "team-a"
    for bad in ("http://:hunter2@cache:6379", "redis://:hunter2@", "redis://:hunter2@cache:99999",
                "redis://:hunter2@cache/db1"):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"REDIS_URL": bad})
        assert info.value.problems[0].startswith("REDIS_URL") and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError):
        Settings.from_env({"CACHE_PREFIX": "a b"})


def test_tls_with_rediss(tmp_path):
    require_redis_server()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                           "-out", str(cert)], capture_output=True)
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = RedisServer(tmp_path / "redis", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    server.port = port
    server.start()
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        a, b = replica(tmp_path, url, "a"), replica(tmp_path, url, "b")
        post_images(a, "/v2/classify", RED)
        assert post_images(b, "/v2/classify", RED).get_json()["cached"] is True
        plain = replica(tmp_path, f"redis://127.0.0.1:{port}/0", "c")  # no TLS: not Redis to us
        assert post_images(plain, "/v2/classify", RED).status_code == 200
    finally:
        server.kill()


# --- two service processes (slow) ------------------------------------------------------------

@pytest.fixture
def two_replicas(tmp_path, server):
    """Two `python app.py` processes with the real small TFLite classifier and the same REDIS_URL."""
    models_dir = tmp_path / "models"
    build_folder(models_dir, "mobilenet_v2_quant")
    env = {"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": "mobilenet_v2_quant",
           "MODELS_DIR": str(models_dir), "PRELOAD_MODELS": "true", "REDIS_URL": server.url,
           "INFERENCE_CONCURRENCY": "4", "MAX_QUEUE": "32", "INTRA_OP_THREADS": "1"}
    started = [start_server(env, tmp_path / f"replica{i}.log") for i in range(2)]
    try:
        for _, url in started:
            wait_until(lambda url=url: requests.get(url + "/ready", timeout=2).status_code == 200, 120, "readiness")
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def classify(url: str, image: bytes, name: str = "photo.jpg") -> requests.Response:
    return requests.post(url + "/v2/classify?top_k=3", files={"image": (name, image, "image/jpeg")}, timeout=30)


@pytest.mark.slow
def test_two_processes_share_hits_and_one_report(two_replicas):
    a, b = two_replicas
    cat = photo("coral/cat.bmp").read_bytes()
    first = classify(a, cat).json()
    again = classify(b, cat).json()
    assert first["cached"] is False and again["cached"] is True
    assert again["results"] == [{**first["results"][0], "cached": True}]
    assert "cat" in first["results"][0]["predictions"][0]["label"].lower()
    report = requests.get(b + "/report", timeout=10).json()
    assert report["shared"] is True and report["partial"] is False
    assert (report["images"][0]["num_requested"], report["images"][0]["num_cache_hits"]) == (2, 1)
    assert report["routes"]["/v2/classify"]["num_requested"] == 2


@pytest.mark.slow
def test_redis_killed_mid_load_only_200s_then_hits_again(two_replicas, server):
    a, b = two_replicas
    images = [imaging.jpeg(size=(64, 48), color=(i * 7 % 256, i * 13 % 256, i * 29 % 256)) for i in range(40)]
    started = []
    killed = []

    def send(i):
        if i == 60:  # the other seven threads' requests are in flight while Redis dies
            server.kill()
            killed.append(time.monotonic())
        started.append(time.monotonic())
        return classify((a, b)[i % 2], images[i % len(images)]).status_code
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(240)))
    assert statuses == [200] * len(statuses)
    after_kill = sum(1 for t in started if t > killed[0])
    assert after_kill > 50  # the kill really was mid-load
    for url in (a, b):
        assert requests.get(url + "/health", timeout=2).status_code == 200
        assert requests.get(url + "/ready", timeout=2).status_code == 200
        assert requests.get(url + "/status", timeout=2).json()["shared_store"]["available"] is False
        assert "shared_store_available 0.0" in requests.get(url + "/metrics", timeout=2).text
    server.start()
    probe = imaging.jpeg(size=(50, 50), color=(3, 2, 1))

    def back(url):  # a request lets the circuit breaker try Redis again once its back-off is over
        return classify(url, probe).status_code == 200 and \
            requests.get(url + "/status", timeout=2).json()["shared_store"]["available"]
    wait_until(lambda: back(a) and back(b), 20, "both replicas using Redis again after the restart")
    fresh = imaging.jpeg(size=(50, 50), color=(1, 2, 3))
    assert classify(a, fresh).json()["cached"] is False
    assert classify(b, fresh).json()["cached"] is True  # A's result, through Redis
    # The restarted Redis is empty (no persistence here); what each replica counted while it was
    # down is handed over to it, so both replicas' reports are whole again.
    for url in (b, a):
        report = requests.get(url + "/report", timeout=10).json()
        assert (report["shared"], report["partial"]) == (True, False)
    assert report["routes"]["/v2/classify"]["num_requested"] >= after_kill + 2
