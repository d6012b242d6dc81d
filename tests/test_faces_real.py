"""The real face model (dlib) on real photos (../shared/images/faces, its README says who is who):
the distances between people, printed, and the margins at the model's threshold; then the real
server (`python app.py` under waitress, the face store in SQLite) called exactly as its clients
call it: deepstack-python's DeepstackFace (Home Assistant), for real, and Double Take's DeepStack
detector, replayed. One photo registered per person; every other photo of that person recognised
as them, the person never registered stays unknown, both faces of the group photos found and
named, a 12 MP group photo, a photo without a face."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests
from PIL import Image, ImageOps

from tests.support.double_take import DoubleTakeDeepStack
from tests.support.faces import FACES, GROUPS, PROBES, REGISTER, photo, who_is
from tests.support.paths import SHARED
from tests.support.servers import start_server, stop_server, wait_until

pytestmark = pytest.mark.slow
KEY = "ha-key"


def require_photos():
    if not FACES.is_dir():
        pytest.skip("../shared/images/faces is missing")


@pytest.fixture(scope="module")
def model():
    require_photos()
    from models.builtins import BUILTINS
    from registry import create_model
    from registry.tasks import TASKS

    name = TASKS["face"].default_model
    face_model = create_model(BUILTINS[name].task, name, SHARED)
    face_model.load()
    return face_model


def faces_of(model, name: str):
    image = ImageOps.exif_transpose(Image.open(FACES / name)).convert("RGB")
    found = model.predict([image], model.default_min_score, True)[0]
    return sorted(found, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def test_distances_between_people_and_the_margins_at_the_threshold(model):
    registered = {person: faces_of(model, name)[0].embedding for person, name in REGISTER.items()}
    same, different = [], []
    print(f"\n{'photo':24} {'face':>4}  " + "  ".join(f"{p:>6}" for p in registered))
    for name in list(PROBES) + list(GROUPS):
        found = faces_of(model, name)
        for number, face in enumerate(found):
            distances = {p: float(np.linalg.norm(face.embedding - e)) for p, e in registered.items()}
            print(f"{name:24} {number:>4}  " + "  ".join(f"{d:6.3f}" for d in distances.values()) + f"  {who_is(name, face.box)}")
            who = who_is(name, face.box)
            for person, distance in distances.items():
                (same if person == who else different).append(distance)
    threshold = model.same_person_distance
    print(f"same person {min(same):.3f}-{max(same):.3f}, different people {min(different):.3f}-{max(different):.3f}; "
          f"margins at {threshold}: {threshold - max(same):.3f} / {min(different) - threshold:.3f}")
    assert max(same) < threshold < min(different)
    assert len(same) == 9 and len(different) == 3 * 11 - 9   # every face of every photo was found
    assert len(faces_of(model, "obama_and_biden.jpg")) == 3   # the README's two, and a child at the bottom right


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_photos()
    folder = tmp_path_factory.mktemp("faces-server")
    log = folder / "server.log"
    process, url = start_server({"FACE_ENABLED": "true", "DATA_DIR": str(folder / "data"), "API_KEYS": KEY,
                                 "PRELOAD_MODELS": "true", "MODELS_DIR": str(folder)}, log)
    try:
        wait_until(lambda: requests.get(url + "/ready", timeout=2).status_code == 200, 60, "the face model")
        yield url
    finally:
        stop_server(process, log)


def deepstack_face(url: str, **options):
    from deepstack.core import DeepstackFace
    host, port = url.removeprefix("http://").split(":")
    return DeepstackFace(ip=host, port=int(port), api_key=KEY, timeout=60, **options)


def test_home_assistants_client_registers_one_photo_each_and_recognises_the_others(server):
    from deepstack.core import DeepstackException, get_recognized_faces
    client = deepstack_face(server)                      # deepstack-python 0.9: min_confidence 0.45 on every call
    for person, name in REGISTER.items():
        assert client.register(person, photo(name)) == "face added"
    assert sorted(client.get_registered_faces()) == sorted(REGISTER)
    for name, who in PROBES.items():
        predictions = client.recognize(photo(name))
        assert [p["userid"] for p in predictions] == [who], name
        if who != "unknown":
            assert get_recognized_faces(predictions)[who] >= 67, name   # DeepStack's default threshold
    for name, people in GROUPS.items():
        named = {p["userid"] for p in client.recognize(photo(name))} - {"unknown"}
        assert named == people, name
    detected = client.detect(photo("two_people.jpg"))
    assert len(detected) == 2 and all(p["confidence"] >= 0.45 for p in detected)
    with pytest.raises(DeepstackException, match="status code: 400"):   # no face: DeepStack's 400 too
        client.register("nobody", (SHARED / "images" / "coral" / "hot_dog.jpg").read_bytes())


def forget_everyone(url: str) -> None:
    for userid in deepstack_face(url).get_registered_faces():
        requests.post(url + "/v1/vision/face/delete", files={"userid": (None, userid), "api_key": (None, KEY)}, timeout=10)


def test_double_take_trains_one_photo_per_request_recognises_and_removes(server):
    forget_everyone(server)
    double_take = DoubleTakeDeepStack(server, key=KEY)
    for name in ("alex_lacamoire1.jpg", "alex_lacamoire2.jpg"):
        assert str(double_take.train("Alex", photo(name))["status"]).startswith("2")
    failed = double_take.train("Alex", (SHARED / "images" / "coral" / "hot_dog.jpg").read_bytes())
    assert failed["status"] == 400 and failed["error"]                # shown as a failed training
    response = double_take.recognize(photo("alex_lacamoire3.png"))
    (face,) = double_take.normalize(response.json())
    assert face["name"] == "alex" and face["match"] is True    # confidence >= 60, box >= 10000 px
    (stranger,) = double_take.normalize(double_take.recognize(photo("lin_manuel_miranda.png")).json())
    assert stranger["name"] == "unknown" and stranger["match"] is False
    assert double_take.remove("Alex").status_code == 200
    (gone,) = double_take.normalize(double_take.recognize(photo("alex_lacamoire3.png")).json())
    assert gone["name"] == "unknown"


def test_a_12_megapixel_group_photo_and_a_photo_without_faces(server):
    client = deepstack_face(server)
    for person in ("obama", "biden"):
        client.register(person, photo(REGISTER[person]))
    big = Image.open(FACES / "obama_and_biden.jpg").convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    with io.BytesIO() as out:
        big.save(out, format="JPEG", quality=85)
        data = out.getvalue()
    health = []
    started = time.perf_counter()
    with requests.Session() as session:
        answer = session.post(server + "/v1/vision/face/recognize", data={"api_key": KEY}, files={"image": data}, timeout=60)
        seconds = time.perf_counter() - started
        for _ in range(3):   # the service answers health checks between photos
            t = time.perf_counter()
            assert session.get(server + "/health", timeout=5).status_code == 200
            health.append(time.perf_counter() - t)
    predictions = answer.json()["predictions"]
    print(f"\n12 MP group photo ({len(data) / 1e6:.1f} MB JPEG): {seconds:.2f} s, {len(predictions)} faces")
    assert len(predictions) == 3 and {p["userid"] for p in predictions} == {"obama", "biden", "unknown"}
    assert client.recognize((SHARED / "images" / "coral" / "hot_dog.jpg").read_bytes()) == []
    assert client.detect((SHARED / "images" / "darknet" / "giraffe.jpg").read_bytes()) == []


def test_health_answers_while_faces_are_computed(server):
    """dlib holds the interpreter lock while it computes: /health waits at most one dlib call."""
    import threading

    stop, latencies = threading.Event(), []

    def load():
        with requests.Session() as session:
            while not stop.is_set():
                session.post(server + "/v1/vision/face/recognize", data={"api_key": KEY},
                             files={"image": photo("two_people.jpg")}, timeout=60)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        for _ in range(20):
            started = time.perf_counter()
            requests.get(server + "/health", timeout=10)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    latencies.sort()
    print(f"\n/health under face load: p50 {latencies[10] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    assert latencies[-1] < 2.0
