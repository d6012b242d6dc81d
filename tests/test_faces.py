"""Faces over HTTP (api/faces.py, dataplane/faces.py) with an instant fake face model and the real
SQLite store: DeepStack's shapes, statuses and error shape, userids, bad input, concurrent
registrations, the feature flag and API keys. The real model (dlib) on real photos, through the
real server, as deepstack-python and Double Take call it: tests/test_faces_real.py."""
from __future__ import annotations

import base64
import sqlite3
import threading

import pytest

from api.faces import USERID_MAX_CHARS
from app import create_app
from config import Settings
from dataplane.faces import confidence
from tests.support.faces import FakeFaceModel, post_form, solid_jpeg
from tests.support.http import LEAKS, multipart

RED, BLUE, DARK = solid_jpeg((220, 30, 30)), solid_jpeg((30, 30, 220)), solid_jpeg((5, 5, 5))
PAIR = solid_jpeg((220, 30, 30), size=(200, 40))   # the fake finds two faces in a photo this wide
PREDICTION = {"confidence", "userid", "x_min", "y_min", "x_max", "y_max"}
TIMINGS = {"inferenceMs", "processMs", "analysisRoundTripMs"}


def face_app(tmp_path, model=None, **settings):
    return create_app(Settings(face_enabled=True, data_dir=tmp_path / "data", models_dir=tmp_path, **settings),
                      face=model or FakeFaceModel())


@pytest.fixture
def client(tmp_path):
    return face_app(tmp_path).test_client()


def image(data: bytes, name: str = "image"):
    return (name, f"{name}.jpg", data)


def deepstack_error(response, code: int) -> str:
    assert response.status_code == code, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"success", "error", "code"} and body["success"] is False and body["code"] == code
    assert not any(leak in body["error"] for leak in LEAKS)
    return body["error"]


def register(client, userid, *photos, **fields):
    return post_form(client, "/v1/vision/face/register", [image(p, f"image{i + 1}") for i, p in enumerate(photos)],
                     userid=userid, **fields)


def recognize(client, photo, **fields):
    return post_form(client, "/v1/vision/face/recognize", [image(photo)], **fields)


# --- DeepStack's shapes -------------------------------------------------------------------------

def test_register_recognize_list_delete_in_deepstacks_shapes(client):
    unknown = recognize(client, RED).get_json()
    assert unknown["predictions"][0]["userid"] == "unknown" and unknown["predictions"][0]["confidence"] == 0
    added = register(client, "alice", RED).get_json()
    assert added["success"] is True and added["message"] == "face added" and added["faces"] == 1
    assert register(client, "alice", RED).get_json()["message"] == "face updated"
    body = recognize(client, RED).get_json()          # answered at once: faces are never cached
    assert set(body) == {"success", "predictions", "count", "message", "code"} | TIMINGS
    (face,) = body["predictions"]
    assert set(face) == PREDICTION and face["userid"] == "alice" and face["confidence"] > 0.99
    assert (face["x_min"], face["y_min"], face["x_max"], face["y_max"]) == (16, 12, 48, 36)
    assert body["message"] == "A face was recognised" and body["count"] == 1
    stranger = recognize(client, BLUE).get_json()
    assert stranger["predictions"][0]["userid"] == "unknown" and stranger["message"] == "No known faces"
    listed = post_form(client, "/v1/vision/face/list").get_json()
    assert listed == {"success": True, "faces": ["alice"], "count": 1, "code": 200}
    assert post_form(client, "/v1/vision/face/delete", userid="alice").get_json() == \
        {"success": True, "deleted": 2, "code": 200}
    assert post_form(client, "/v1/vision/face/list").get_json()["faces"] == []
    assert recognize(client, RED).get_json()["predictions"][0]["userid"] == "unknown"
    # DeepStack answers success for a userid that is not registered, too.
    assert post_form(client, "/v1/vision/face/delete", userid="nobody").get_json()["deleted"] == 0


def test_detect_with_and_without_the_trailing_slash(client):
    for path in ("/v1/vision/face", "/v1/vision/face/"):
        body = post_form(client, path, [image(PAIR)]).get_json()
        assert [set(p) for p in body["predictions"]] == [{"confidence", "x_min", "y_min", "x_max", "y_max"}] * 2
        assert body["count"] == 2 and body["message"] == "Found 2 faces"
    assert post_form(client, "/v1/vision/face", [image(RED)], min_confidence="0.95").get_json()["predictions"] == []
    assert deepstack_error(post_form(client, "/v1/vision/face", [image(RED)], min_confidence="2"), 400)
    # CodeProject.AI reads the first file, whatever its name.
    assert post_form(client, "/v1/vision/face", [image(RED, "upload")]).get_json()["count"] == 1


def test_min_confidence_can_ask_for_more_certainty_never_less(tmp_path):
    model = FakeFaceModel()
    client = face_app(tmp_path, model).test_client()
    register(client, "alice", solid_jpeg((200, 40, 40)))
    near = solid_jpeg((200, 40, 58))   # a distance of about 0.07: within 0.1, confidence about 0.94
    assert recognize(client, near).get_json()["predictions"][0]["userid"] == "alice"
    assert recognize(client, near, min_confidence="0.99").get_json()["predictions"][0]["userid"] == "unknown"
    far = solid_jpeg((200, 40, 75))    # about 0.14: beyond the model's same-person distance
    assert recognize(client, far, min_confidence="0").get_json()["predictions"][0]["userid"] == "unknown"
    assert confidence(0.6, 0.6) == pytest.approx(0.67) and confidence(float("inf"), 0.6) == 0.0


def test_face_max_distance_is_the_operators_limit(tmp_path):
    strict = face_app(tmp_path, face_max_distance=0.01).test_client()
    register(strict, "alice", solid_jpeg((200, 40, 40)))
    assert recognize(strict, solid_jpeg((200, 40, 58))).get_json()["predictions"][0]["userid"] == "unknown"
    assert recognize(strict, solid_jpeg((200, 40, 40))).get_json()["predictions"][0]["userid"] == "alice"


# --- registration ---------------------------------------------------------------------------------

def test_several_photos_under_any_field_names_no_face_ones_skipped(client):
    response = post_form(client, "/v1/vision/face/register",
                         [image(RED, "image1"), image(DARK, "image2"), image(PAIR, "photo")], userid="alice")
    body = response.get_json()
    assert response.status_code == 200 and body["faces"] == 2 and body["skipped"] == ["image2"]
    assert [(u["image"], u["faces_found"]) for u in body["used"]] == [("image1", 1), ("photo", 2)]


def test_a_photo_without_a_face(client):
    assert post_form(client, "/v1/vision/face", [image(DARK)]).get_json()["predictions"] == []
    assert recognize(client, DARK).get_json()["predictions"] == []
    assert "No face" in deepstack_error(register(client, "alice", DARK), 400)
    assert "any of the 2" in deepstack_error(register(client, "alice", DARK, DARK), 400)
    assert post_form(client, "/v1/vision/face/list").get_json()["faces"] == []


def test_an_unreadable_photo_fails_the_whole_registration(client):
    deepstack_error(register(client, "alice", RED, b"not an image"), 400)
    deepstack_error(register(client, "alice", RED, b""), 400)
    assert post_form(client, "/v1/vision/face/list").get_json()["faces"] == []
    assert "No valid image" in deepstack_error(post_form(client, "/v1/vision/face/register", userid="alice"), 400)


GOOD_USERIDS = ["alice", "José", "Zoë Saldaña", "李小龙", "O'Neil", "anne-marie_2", "a@b.example", "x" * USERID_MAX_CHARS]
BAD_USERIDS = ["unknown", "Unknown", " bob", "bob ", "x" * (USERID_MAX_CHARS + 1), "bob\n", "a/b", "<script>",
               "a\x00b", "tab\there", "semi;colon", "ﷺ\u202e"]


@pytest.mark.parametrize("userid", GOOD_USERIDS)
def test_valid_userids(client, userid):
    assert register(client, userid, RED).status_code == 200
    assert userid in post_form(client, "/v1/vision/face/list").get_json()["faces"]
    assert post_form(client, "/v1/vision/face/delete", userid=userid).get_json()["deleted"] == 1


@pytest.mark.parametrize("userid", BAD_USERIDS)
def test_invalid_userids_are_400_naming_the_rule(client, userid):
    assert "userid" in deepstack_error(register(client, userid, RED), 400)
    assert "userid" in deepstack_error(post_form(client, "/v1/vision/face/delete", userid=userid), 400)


def test_userid_missing_and_codeprojects_spelling(client):
    assert "userid not specified" in deepstack_error(post_form(client, "/v1/vision/face/register", [image(RED)]), 400)
    assert "userid not specified" in deepstack_error(post_form(client, "/v1/vision/face/delete"), 400)
    assert post_form(client, "/v1/vision/face/register", [image(RED)], userId="bob").status_code == 200
    # One person written two ways in Unicode (é composed, or e and an accent) is one userid.
    register(client, "Jose\u0301", BLUE)
    assert "José" in post_form(client, "/v1/vision/face/list").get_json()["faces"]


def test_concurrent_registrations_of_one_userid(tmp_path):
    app = face_app(tmp_path, FakeFaceModel(delay=0.02), inference_concurrency=16)
    answers = []

    def one():
        answers.append(register(app.test_client(), "same", RED).get_json())

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["message"] for a in answers) == ["face added"] + ["face updated"] * 11
    client = app.test_client()
    assert post_form(client, "/v1/vision/face/list").get_json()["faces"] == ["same"]
    with sqlite3.connect(tmp_path / "data" / "faces.sqlite3") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT generation) FROM face_embeddings").fetchone() == (12, 12)
        # Embeddings are stored, not photos: 3 floats each here.
        assert {len(blob) for (blob,) in db.execute("SELECT embedding FROM face_embeddings")} == {12}


# --- match ----------------------------------------------------------------------------------------

def test_match_two_photos(client):
    same = post_form(client, "/v1/vision/face/match", [image(RED, "image1"), image(RED, "image2")]).get_json()
    assert same["success"] is True and same["similarity"] > 0.99 and same["distance"] == 0
    other = post_form(client, "/v1/vision/face/match", [image(RED, "image1"), image(BLUE, "image2")]).get_json()
    assert other["similarity"] < 0.01
    assert "image2" in deepstack_error(
        post_form(client, "/v1/vision/face/match", [image(RED, "image1"), image(DARK, "image2")]), 400)
    assert "only one" in deepstack_error(post_form(client, "/v1/vision/face/match", [image(RED, "image1")]), 400)
    assert "only two" in deepstack_error(post_form(client, "/v1/vision/face/match", [image(RED, f"i{n}") for n in range(3)]), 400)
    assert "No valid image" in deepstack_error(post_form(client, "/v1/vision/face/match"), 400)


# --- /v2/faces ------------------------------------------------------------------------------------

def test_v2_faces_batch_with_identities_and_per_image_errors(client):
    register(client, "alice", RED)
    images = [{"image_base64": base64.b64encode(data).decode()} for data in (RED, BLUE, b"garbage", DARK)]
    body = client.post("/v2/faces", json={"images": images}).get_json()
    assert body["model"] == "fake_faces"
    alice, stranger, broken, empty = body["results"]
    assert alice["faces"][0]["userid"] == "alice" and alice["faces"][0]["distance"] == 0
    assert alice["faces"][0]["box"] == {"x1": 16, "y1": 12, "x2": 48, "y2": 36}
    assert stranger["faces"][0]["userid"] is None and stranger["faces"][0]["distance"] > 1
    assert broken["error"]["code"] == 400 and empty["faces"] == []
    content_type, data = multipart(files=[image(b"garbage")])
    single = client.post("/v2/faces", data=data, content_type=content_type)
    assert single.status_code == 400 and single.get_json()["error"]["type"] == "invalid_image"


def test_v2_faces_distance_is_null_when_nobody_is_registered(client):
    body = client.post("/v2/faces", json={"image_base64": base64.b64encode(RED).decode()}).get_json()
    assert body["results"][0]["faces"][0]["distance"] is None


# --- the feature, keys, failures ------------------------------------------------------------------

FACE_ROUTES = ("/v1/vision/face", "/v1/vision/face/", "/v1/vision/face/register", "/v1/vision/face/recognize",
               "/v1/vision/face/match", "/v1/vision/face/list", "/v1/vision/face/delete")


def test_face_routes_are_403_when_the_feature_is_off(tmp_path):
    client = create_app(Settings(models_dir=tmp_path)).test_client()
    for path in FACE_ROUTES:
        assert "FACE_ENABLED=true" in deepstack_error(post_form(client, path, [image(RED)], userid="alice"), 403)
    assert client.post("/v2/faces", json={"image_base64": base64.b64encode(RED).decode()}).status_code == 403
    assert client.get("/status").get_json()["features"]["face"]["enable_with"] == "FACE_ENABLED=true"


def test_api_keys_as_on_the_other_deepstack_routes(tmp_path):
    client = face_app(tmp_path, api_keys=("k1",)).test_client()
    for path in FACE_ROUTES:
        assert "api_key" in deepstack_error(post_form(client, path, [image(RED)], userid="a"), 401)
    assert register(client, "alice", RED, api_key="k1").status_code == 200
    assert recognize(client, RED, api_key="k1").get_json()["predictions"][0]["userid"] == "alice"
    # deepstack-python posts the list's key urlencoded (no file); other routes take it from multipart only.
    assert client.post("/v1/vision/face/list", data={"api_key": "k1"}).get_json()["faces"] == ["alice"]
    deepstack_error(client.post("/v1/vision/face/delete", data={"api_key": "k1", "userid": "alice"}), 401)
    assert client.post("/v2/faces", json={"image_base64": base64.b64encode(RED).decode()},
                       headers={"X-API-Key": "k1"}).status_code == 200


def test_model_failure_is_500_and_the_store_unavailable_is_503(tmp_path, caplog):
    app = face_app(tmp_path, FakeFaceModel(fail_predict=True))
    deepstack_error(recognize(app.test_client(), RED), 500)
    app = face_app(tmp_path)
    client = app.test_client()
    app.extensions["faces"].store._db.close()   # the database goes away
    for response in (register(client, "alice", RED), recognize(client, RED), post_form(client, "/v1/vision/face/list"),
                     post_form(client, "/v1/vision/face/delete", userid="alice")):
        assert "nothing was changed" in deepstack_error(response, 503)
        assert response.headers["Retry-After"] == "5"
    assert client.get("/status").get_json()["face_store"]["state"] == "unavailable"


def test_the_face_store_and_its_state_in_status(client):
    register(client, "alice", RED, RED)
    register(client, "bob", BLUE)
    assert client.get("/status").get_json()["face_store"] == {
        "backend": "sqlite", "state": "ok", "faces": 3, "users": 2, "model": "fake_faces"}


def test_a_face_model_folder_is_refused_at_start_up(tmp_path):
    from config import ConfigError
    folder = tmp_path / "myfaces"
    folder.mkdir()
    (folder / "model.json").write_text("{}")
    with pytest.raises(ConfigError) as info:
        create_app(Settings.from_env({"FACE_ENABLED": "true", "FACE_MODEL": "myfaces", "MODELS_DIR": str(tmp_path),
                                      "DATA_DIR": str(tmp_path / "data")}))
    assert "model folders are not supported for face" in str(info.value)


def test_an_unwritable_data_dir_stops_the_start(tmp_path):
    from config import ConfigError
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as info:
        face_app(tmp_path / "file")
    assert "DATA_DIR" in str(info.value)


HOSTILE = [({}, []), ({"userid": "a"}, [("image", "a.jpg", b"\xff\xd8\xff" * 10)]),
           ({"min_confidence": "nan"}, [("image", "a.jpg", RED)]), ({"userid": "a" * 10000}, [("image", "a.jpg", RED)]),
           ({"userid": "\ud800"}, []), ({}, [("image", "a.jpg", b"GIF89a" + b"\x00" * 20)])]


@pytest.mark.parametrize("fields, files", HOSTILE)
def test_no_client_input_gets_a_500(client, fields, files):
    for path in FACE_ROUTES + ("/v2/faces",):
        content_type, body = multipart(fields={k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                                               for k, v in fields.items()}, files=files)
        response = client.post(path, data=body, content_type=content_type)
        assert response.status_code < 500, (path, response.get_data(as_text=True))
    assert client.post("/v1/vision/face/register", data=b"userid=a", content_type="text/plain").status_code < 500
