"""Faces over HTTP: DeepStack's face API (`/v1/vision/face/...`: detect, register, recognize,
match, list, delete) with its fields, answers and error shape, as DeepStack's server, the
deepstack-python client (Home Assistant), Double Take and CodeProject.AI's FaceProcessing module
use them (docs/faces.md lists the sources); and `/v2/faces` for our own clients (batches, URLs,
distances). Same decoding, caps, admission, API keys and feature flag (FACE_ENABLED) as every
other route; the data plane (dataplane/faces.py) does the work.

Deliberate differences from DeepStack, each one a client's need: a registration adds photos to a
userid instead of replacing its one averaged embedding (Double Take sends one photo per request);
the largest face of a photo is used (DeepStack takes an arbitrary one); match answers 400 when a
photo shows no face (DeepStack: 200 with success false).
"""
from __future__ import annotations

import time
import unicodedata

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from api import answers, deepstack
from api.inference import admitted, client_gone
from api.middleware import log_fields
from api.parsing import float_arg, read_sources
from contract import FACE
from dataplane.faces import FaceRecognition, KnownFace
from dataplane.pipeline import ImageResult
from dataplane.sources import ImageSource
from errors import ApiError, FeatureDisabled, InvalidParameter, MissingImage, echo
from registry import TASKS

bp = Blueprint("faces", __name__, url_prefix="/v1/vision/face")
v2 = Blueprint("faces_v2", __name__)

# DeepStack's defaults: face detection keeps faces scored 0.55 and over; recognition names a
# face at confidence 0.67 and over (server/server.go).
DETECT_MIN_CONFIDENCE = 0.55
RECOGNIZE_MIN_CONFIDENCE = 0.67
UNKNOWN = "unknown"
USERID_MAX_CHARS = 100
USERID_PUNCTUATION = frozenset(" -_.'@+")
USERID_RULE = (f"a userid is 1 to {USERID_MAX_CHARS} characters: letters and digits of any script, spaces "
               f"inside it and {' '.join(sorted(USERID_PUNCTUATION - {' '}))}; '{UNKNOWN}' is reserved")

# The DeepStack error shape for these routes too (DeepStack answers its face routes like its others).
bp.register_error_handler(ApiError, deepstack._api_error)
bp.register_error_handler(HTTPException, deepstack._http_error)
bp.register_error_handler(Exception, deepstack._unexpected)


def _faces() -> FaceRecognition:
    faces = current_app.extensions.get("faces")
    if faces is None:
        raise FeatureDisabled(TASKS[FACE].disabled_message)
    return faces


def _route() -> str:
    return request.url_rule.rule


# --- what the requests carry ---------------------------------------------------------------------

def userid_field() -> str:
    """The form's `userid` (CodeProject.AI's .NET client sends `userId`), NFC-normalised and checked."""
    raw = request.form.get("userid") or request.form.get("userId") or ""
    if not raw:
        raise InvalidParameter("userid not specified: send the form field 'userid'.")
    userid = unicodedata.normalize("NFC", raw)
    valid = (len(userid) <= USERID_MAX_CHARS and userid.strip() == userid and userid.casefold() != UNKNOWN
             and all(c in USERID_PUNCTUATION or unicodedata.category(c)[0] in "LMN" for c in userid))
    if not valid:
        raise InvalidParameter(f"The userid '{echo(userid)}' is not valid: {USERID_RULE}.")
    return userid


def uploaded_files() -> list[tuple[str, bytes]]:
    """Every file part, in order, whatever its field name (DeepStack reads image, image1..N)."""
    if request.mimetype != "multipart/form-data":
        return []
    return [(name, upload.read()) for name, upload in request.files.items(multi=True)]


def one_image() -> list[ImageSource]:
    """Detect and recognize: the `image` part (or JSON, as on every route), else the one file
    sent under another name (CodeProject.AI reads the first file)."""
    if request.mimetype == "multipart/form-data" and "image" not in request.files:
        files = uploaded_files()
        if len(files) == 1:
            return [ImageSource.of_bytes(files[0][1])]
    return read_sources(request, max_images=1)


def _timed(started: float, results: list[ImageResult], **fields):
    """CodeProject.AI's timing fields and code around the answer (as api/deepstack.py's)."""
    return jsonify(success=True, **fields,
                   inferenceMs=round(sum(r.inference_seconds for r in results) * 1000),
                   processMs=round(sum(r.seconds for r in results) * 1000),
                   analysisRoundTripMs=round((time.perf_counter() - started) * 1000), code=200)


def corners(box) -> dict:
    x_min, y_min, x_max, y_max = box
    return {"x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


# --- DeepStack's routes --------------------------------------------------------------------------

@bp.post("")
@bp.post("/")
@admitted
def detect():
    started, faces = time.perf_counter(), _faces()
    min_confidence = float_arg("min_confidence", default=DETECT_MIN_CONFIDENCE, minimum=0.0, maximum=1.0,
                               source=request.form)
    model, results = faces.detect(one_image(), min_score=min_confidence, route=_route(), gone=client_gone())
    result = answers.single(results, model)
    found = sorted(result.value, key=lambda face: face.score, reverse=True)
    predictions = [{"confidence": face.score, **corners(face.box)} for face in found]
    return _timed(started, results, predictions=predictions, count=len(predictions),
                  message=f"Found {len(predictions)} face{'' if len(predictions) == 1 else 's'}")


@bp.post("/recognize")
@admitted
def recognize():
    started, faces = time.perf_counter(), _faces()
    min_confidence = float_arg("min_confidence", default=RECOGNIZE_MIN_CONFIDENCE, minimum=0.0, maximum=1.0,
                               source=request.form)
    model, results = faces.recognize(one_image(), min_confidence=min_confidence, route=_route(),
                                        gone=client_gone())
    result = answers.single(results, model)
    predictions = [deepstack_face(known) for known in result.value]
    named = sum(p["userid"] != UNKNOWN for p in predictions)
    return _timed(started, results, predictions=predictions, count=len(predictions),
                  message="A face was recognised" if named else "No known faces")


def deepstack_face(known: KnownFace) -> dict:
    """DeepStack's prediction: an unknown face has userid 'unknown' and confidence 0."""
    if known.userid is None:
        return {"confidence": 0, "userid": UNKNOWN, **corners(known.face.box)}
    return {"confidence": known.confidence, "userid": known.userid, **corners(known.face.box)}


@bp.post("/register")
@admitted
def register():
    started, faces = time.perf_counter(), _faces()
    userid = userid_field()
    files = uploaded_files()
    if not files:
        raise MissingImage("No valid image file found. Send the photos as multipart/form-data file fields "
                           "(image, or image1, image2, ...).")
    limit = current_app.extensions["settings"].max_request_images
    if len(files) > limit:
        raise InvalidParameter(f"At most {limit} photos per registration (MAX_IMAGES_PER_REQUEST); "
                               f"this one has {len(files)}.")
    outcome = faces.register(userid, [ImageSource.of_bytes(data) for _, data in files], route=_route(),
                                gone=client_gone())
    log_fields(images=len(files), faces=len(outcome.used))
    used = [{"image": files[i][0], "faces_found": count, **corners(face.box)} for i, face, count in outcome.used]
    return jsonify(success=True, message="face updated" if outcome.existed else "face added", userid=userid,
                   faces=len(used), used=used, skipped=[files[i][0] for i in outcome.skipped],
                   analysisRoundTripMs=round((time.perf_counter() - started) * 1000), code=200)


@bp.post("/match")
@admitted
def match():
    started, faces = time.perf_counter(), _faces()
    files = uploaded_files()
    if not files:
        raise MissingImage("No valid image file found. Send two photos as file fields image1 and image2.")
    if len(files) != 2:
        raise InvalidParameter("expected two image files, only one found" if len(files) == 1
                               else f"only two images allowed; this request has {len(files)}")
    distance, similarity = faces.match([ImageSource.of_bytes(data) for _, data in files], route=_route(),
                                          gone=client_gone())
    return jsonify(success=True, similarity=similarity, distance=distance,
                   analysisRoundTripMs=round((time.perf_counter() - started) * 1000), code=200)


@bp.post("/list")
def list_faces():
    users = _faces().store.users()
    return jsonify(success=True, faces=[userid for userid, _ in users], count=len(users), code=200)


@bp.post("/delete")
def delete():
    faces = _faces()
    deleted = faces.store.delete(userid_field())
    log_fields(faces=deleted)
    return jsonify(success=True, deleted=deleted, code=200)


# --- ours: /v2/faces -----------------------------------------------------------------------------

@v2.post("/v2/faces")
@admitted
def faces_v2():
    """Faces with identities in one image or a batch (multipart `image` parts, or JSON with URLs
    or base64), with each face's distance to the nearest registered face."""
    faces = _faces()
    min_confidence = float_arg("min_confidence", default=RECOGNIZE_MIN_CONFIDENCE, minimum=0.0, maximum=1.0)
    sources = read_sources(request, max_images=current_app.extensions["settings"].max_request_images)
    model, results = faces.recognize(sources, min_confidence=min_confidence, route="/v2/faces",
                                        gone=client_gone())
    return answers.v2(model, results, "faces", lambda found: [v2_face(known) for known in found])


def v2_face(known: KnownFace) -> dict:
    x1, y1, x2, y2 = known.face.box
    finite = known.userid is not None or known.nearest is not None
    return {"box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, "score": round(known.face.score, 4),
            "userid": known.userid, "confidence": round(known.confidence, 4) if known.userid else 0.0,
            "distance": round(known.distance, 4) if finite else None}
