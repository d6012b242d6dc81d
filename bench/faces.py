"""`python -m bench.faces`: face recognition on one 640x480 photo at one client, the service over
HTTP against the face_recognition library's own calls in-process, and the search at 10k and 100k
registered faces.

The reference is what `face_recognition.face_encodings(img)` + `face_distance` do (its 1.3.0
api.py), reproduced with dlib directly (the wrapper needs dlib built from source): decode with
Pillow to an RGB array, `get_frontal_face_detector()(img, 1)` (HOG, upsample 1), the 5-point
`shape_predictor` per face, `compute_face_descriptor(img, shape, 1)` (one pass), and the Euclidean
distance to the registered encodings. The service answers `POST /v1/vision/face/recognize` with
the same photo, over HTTP, in a `python app.py` with the face store in a temporary DATA_DIR: first
with one registered face, then with SEARCH_SIZES faces (random unit vectors written straight into
its SQLite store, the first request after a restart reading them). Service and reference calls
alternate, so both see the same machine load. What the search adds is also timed in this
process on the same store (`store_search_N`: the generation read and the exact search) and on
the index alone (`search_alone`), where a loaded machine's noise does not swamp it.

    python -m bench.faces --runs 30 --json bench/results/faces-DATE.json
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.__main__ import SHARED, Server, publish

PHOTO = SHARED / "images" / "faces" / "obama3_480p.jpg"   # 853x480, one face; its middle 640x480 is used
SEARCH_SIZES = (10_000, 100_000)


def photo_640x480() -> bytes:
    from PIL import Image

    image = Image.open(PHOTO).convert("RGB")
    left = (image.width - 640) // 2
    with io.BytesIO() as out:
        image.crop((left, 0, left + 640, 480)).save(out, format="JPEG", quality=95)
        return out.getvalue()


class Reference:
    """face_recognition's calls, in this process."""

    def __init__(self):
        import dlib

        from models.builtins import BUILTINS

        paths = BUILTINS[os.environ.get("FACE_MODEL", "dlib")].weights.paths()
        landmarks, encoder = paths.values()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(landmarks))
        self.encoder = dlib.face_recognition_model_v1(str(encoder))
        self.known: list[np.ndarray] = []

    def encodings(self, jpeg: bytes) -> list[np.ndarray]:
        from PIL import Image

        image = np.array(Image.open(io.BytesIO(jpeg)).convert("RGB"))              # load_image_file
        locations = self.detector(image, 1)                                         # _raw_face_locations
        shapes = [self.predictor(image, location) for location in locations]        # model="small"
        return [np.array(self.encoder.compute_face_descriptor(image, shape, 1)) for shape in shapes]

    def recognize(self, jpeg: bytes) -> list[float]:
        return [float(d) for e in self.encodings(jpeg) for d in np.linalg.norm(np.array(self.known) - e, axis=1)]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def p50(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def side_by_side(url: str, reference: Reference, jpeg: bytes, runs: int) -> dict:
    import requests

    service, local = [], []
    with requests.Session() as session:
        for i in range(runs + 2):
            started = time.perf_counter()
            answer = session.post(url + "/v1/vision/face/recognize", files={"image": jpeg}, timeout=60).json()
            elapsed = time.perf_counter() - started
            assert answer["predictions"][0]["userid"] == "obama", answer
            started = time.perf_counter()
            assert min(reference.recognize(jpeg)) < 0.6
            if i >= 2:   # the first two warm both up (the service loads its model, reads its store)
                service.append(elapsed)
                local.append(time.perf_counter() - started)
    return {"service_p50_ms": p50(service), "reference_p50_ms": p50(local),
            "service_ms": [round(s * 1000, 1) for s in service], "reference_ms": [round(s * 1000, 1) for s in local]}


def fill_store(data_dir: Path, count: int, size: int = 128) -> None:
    """`count` random unit vectors registered under `count / 5` userids, written into the SQLite store."""
    from dataplane.face_store import SqliteFaceStore

    store = SqliteFaceStore(data_dir / "faces.sqlite3", os.environ.get("FACE_MODEL", "dlib"), size)
    rng = np.random.default_rng(0)
    for start in range(0, count, 5_000):
        vectors = rng.normal(size=(5_000, size)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with store._transaction() as execute:   # one transaction per 5,000 rows: registering them one by one takes minutes
            generation = execute("UPDATE face_store_state SET generation = generation + 1 RETURNING generation", ()).fetchone()[0]
            for i, vector in enumerate(vectors):
                execute("INSERT INTO face_embeddings (userid, model, embedding, generation, created_at) VALUES (?, ?, ?, ?, ?)",
                        (f"person{(start + i) // 5}", store.model, vector.astype("<f4").tobytes(), generation, 0.0))
    store.close()


def search_alone(count: int, runs: int = 200, size: int = 128) -> dict:
    """FaceIndex.nearest for one query among `count` faces, in this process."""
    from dataplane.face_store import FaceIndex

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(count, size)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaceIndex(size)
    started = time.perf_counter()
    index.replace([(f"p{i}", v.astype("<f4").tobytes()) for i, v in enumerate(vectors)], 1)
    load = time.perf_counter() - started
    query = vectors[:1] + 0.01
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        index.nearest(query)
        times.append(time.perf_counter() - started)
    return {"faces": count, "nearest_p50_ms": round(statistics.median(times) * 1000, 3),
            "nearest_max_ms": round(max(times) * 1000, 3), "index_build_ms": round(load * 1000, 1)}


def store_search(data_dir: Path, runs: int = 200) -> dict:
    """What recognition adds in the service for one face: SqliteFaceStore.nearest, i.e. reading the
    generation (one query) and the exact search, on the store the service uses; and the first
    call, which reads every row."""
    from dataplane.face_store import SqliteFaceStore

    store = SqliteFaceStore(data_dir / "faces.sqlite3", os.environ.get("FACE_MODEL", "dlib"), 128)
    query = np.random.default_rng(2).normal(size=(1, 128)).astype(np.float32)
    started = time.perf_counter()
    store.nearest(query)
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        store.nearest(query)
        times.append(time.perf_counter() - started)
    store.close()
    times.sort()
    return {"faces": store.index.count, "nearest_p50_ms": round(times[len(times) // 2] * 1000, 2),
            "nearest_p90_ms": round(times[int(len(times) * 0.9)] * 1000, 2), "first_call_ms": round(first * 1000, 1)}


def serve(data_dir: Path) -> Server:
    import sys

    return Server([sys.executable, "app.py"], {"FACE_ENABLED": "true", "DATA_DIR": str(data_dir), "PRELOAD_MODELS": "true",
                                               "IMAGE_CLASSIFICATION_ENABLED": "false", "OBJECT_DETECTION_ENABLED": "false",
                                               "DRAIN_GRACE_S": "0"}, "/ready")


def run(runs: int) -> dict:
    import requests

    jpeg, reference = photo_640x480(), Reference()
    reference.known = reference.encodings((SHARED / "images" / "faces" / "obama1.jpg").read_bytes())
    report = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "command": "python -m bench.faces --runs %d" % runs,
              "load_average_at_start": os.getloadavg()[0], "photo": "obama3_480p.jpg, middle 640x480", "runs": runs}
    with tempfile.TemporaryDirectory() as folder:
        server = serve(Path(folder))
        try:
            url = f"http://127.0.0.1:{server.port}"
            requests.post(url + "/v1/vision/face/register", data={"userid": "obama"},
                          files={"image": (SHARED / "images" / "faces" / "obama1.jpg").read_bytes()}, timeout=60)
            report["one_registered"] = side_by_side(url, reference, jpeg, runs)
        finally:
            server.stop()
        for count in SEARCH_SIZES:
            fill_store(Path(folder), count - report.get("filled", 0))
            report["filled"] = count
            report[f"store_search_{count}"] = store_search(Path(folder))
            server = serve(Path(folder))
            try:
                url = f"http://127.0.0.1:{server.port}"
                started = time.perf_counter()
                requests.post(url + "/v1/vision/face/recognize", files={"image": jpeg}, timeout=120)
                first = time.perf_counter() - started
                report[f"registered_{count}"] = {**side_by_side(url, reference, jpeg, runs),
                                                 "first_request_ms": round(first * 1000, 1)}
            finally:
                server.stop()
    report["search_alone"] = [search_alone(count) for count in SEARCH_SIZES]
    for count in SEARCH_SIZES:
        entry = report[f"registered_{count}"]
        entry["added_p50_ms"] = round(entry["service_p50_ms"] - report["one_registered"]["service_p50_ms"], 1)
    report["load_average_at_end"] = os.getloadavg()[0]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faces", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    return publish(run(args.runs), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
