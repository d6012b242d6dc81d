"""The OpenAPI 3.0 document of every route. Validated with openapi-spec-validator in the
tests, and a test checks that every registered Flask route appears here."""
from __future__ import annotations

from flask import Flask

from api import SERVICE_NAME, VERSION
from runtimes.open_inference_tensors import BYTES, HEADER_LENGTH, V2_TYPES

_ERROR = {"$ref": "#/components/responses/Error"}


def _errors(*codes: int) -> dict:
    return {str(code): _ERROR for code in codes}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_MODEL = _query("model", {"type": "string"}, "A configured model name; default: the first configured for the task.")

_SINGLE_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary", "description": "JPEG, PNG, BMP, GIF, WEBP or TIFF"}}}},
        "application/json": {"schema": {"$ref": "#/components/schemas/ImageReference"}},
    },
}
_BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "one or more image parts, at most MAX_IMAGES_PER_REQUEST"}}}},
        "application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/ImageReference"},
            {"type": "object", "required": ["images"], "properties": {
                "images": {"type": "array", "minItems": 1,
                           "items": {"$ref": "#/components/schemas/ImageReference"}}}},
        ]}},
    },
}


# The annotated answer's headers (annotate=true).
_ANNOTATE_HEADERS = {
    "X-Detections": {"description": "annotate=true: detections found", "schema": {"type": "integer"}},
    "X-Detections-Drawn": {"description": "annotate=true: detections drawn (the highest scores)", "schema": {"type": "integer"}},
    "X-Annotated-Size": {"description": "annotate=true: the drawn image's WIDTHxHEIGHT", "schema": {"type": "string"}},
}


# On every inference answer (and an inference route's errors): where the request's time went.
_SERVER_TIMING = {"Server-Timing": {
    "description": "decode;dur=ms, inference;dur=ms, total;dur=ms: fetching and decoding, and the model's time, "
                   "summed over the request's images (inference 0 for a cache hit), and the whole request "
                   "in the service (the standard header, shown by browsers' network panels)",
    "schema": {"type": "string"}, "example": "decode;dur=3.1, inference;dur=12.4, total;dur=16.0"}}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _timed(response: dict) -> dict:
    """An inference route's answer, with its Server-Timing header."""
    return {**response, "headers": {**response.get("headers", {}), **_SERVER_TIMING}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


# --- the DeepStack / CodeProject.AI vision API (api/deepstack.py) ------------------------------

def _deepstack_errors(*codes: int) -> dict:
    error = _json(_ref("DeepStackError"), "An error, in DeepStack's shape")
    return {str(code): error for code in codes}


def _deepstack_body(detection: bool) -> dict:
    fields = {"image": {"type": "string", "format": "binary", "description": "JPEG, PNG, BMP, GIF, WEBP or TIFF"},
              "api_key": {"type": "string", "description": "An API key when API_KEYS is set (empty or absent otherwise); "
                                                           "read from this multipart body only"}}
    if detection:
        fields["min_confidence"] = {"type": "number", "minimum": 0, "maximum": 1, "default": 0.4}
    return {"required": True, "description": "The image is the 'image' part, or else the first file part under any "
                                             "name (CodeProject.AI's clients send 'image1' or 'file')",
            "content": {"multipart/form-data": {"schema": {"type": "object", "properties": fields}}}}


def _deepstack_paths() -> dict:
    detect = {"requestBody": _deepstack_body(True),
              "responses": {"200": _timed(_json(_ref("DeepStackDetection"))),
                            **_deepstack_errors(400, 401, 403, 404, 413, 415, 500, 502, 503, 504)}}
    return {
        "/v1/vision/detection": {"post": {
            "summary": "DeepStack / CodeProject.AI object detection with the default detector",
            "operationId": "deepstackDetection", **detect}},
        "/v1/vision/custom/{model}": {"post": {
            "summary": "DeepStack / CodeProject.AI object detection with a named detector",
            "operationId": "deepstackCustom",
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            **detect}},
        "/v1/vision/custom/list": {"post": {
            "summary": "CodeProject.AI's list of custom models: the configured detectors",
            "operationId": "deepstackCustomList",
            "responses": {"200": _json({"type": "object", "properties": {
                "success": {"type": "boolean"}, "models": {"type": "array", "items": {"type": "string"}},
                "code": {"type": "integer"}}}), **_deepstack_errors(401, 403)}}},
        "/v1/vision/scene": {"post": {
            "summary": "DeepStack scene recognition: the default classifier's top label",
            "operationId": "deepstackScene", "requestBody": _deepstack_body(False),
            "responses": {"200": _timed(_json({"type": "object", "properties": {
                "success": {"type": "boolean"}, "label": {"type": "string"}, "confidence": {"type": "number"},
                "inferenceMs": {"type": "integer"}, "processMs": {"type": "integer"}, "analysisRoundTripMs": {"type": "integer"},
                "code": {"type": "integer"}}})),
                **_deepstack_errors(400, 401, 403, 413, 415, 500, 502, 503, 504)}}},
    }


def _codeproject_status_paths() -> dict:
    """CodeProject.AI's status routes (api/codeproject.py), under both of its prefixes."""
    version = {"type": "object", "properties": {
        "success": {"type": "boolean"}, "message": {"type": "string"}, "version": _ref("CodeProjectVersion"),
        "server": {"type": "string"}, "code": {"type": "integer"}, "hostname": {"type": "string"}}}
    update = {"type": "object", "properties": {
        "success": {"type": "boolean", "description": "false: the latest version is not known (never checked)"},
        "message": {"type": "string"}, "updateAvailable": {"type": "boolean", "nullable": True},
        "current": _ref("CodeProjectVersion"), "code": {"type": "integer"}, "hostname": {"type": "string"}}}
    paths = {}
    for prefix in ("/v1/status", "/v1/server/status"):
        for route, summary, schema in (
                ("ping", "CodeProject.AI's ping: this service's version", version),
                ("version", "CodeProject.AI's version: this service's version", version),
                ("updateavailable", "CodeProject.AI's update check: not known offline (success false)", update)):
            operation = prefix.replace("/v1/", "").replace("/", "_") + "_" + route
            paths[f"{prefix}/{route}"] = {"get": {"summary": summary, "operationId": operation,
                                                  "responses": {"200": _json(schema), **_errors(401)}}}
    return paths


_DEEPSTACK_SCHEMAS = {
    "CodeProjectVersion": {"type": "object", "properties": {
        **{k: {"type": "integer"} for k in ("major", "minor", "patch", "build")},
        "preRelease": {"type": "string", "nullable": True}, "securityUpdate": {"type": "boolean"},
        "file": {"type": "string", "nullable": True}, "releaseNotes": {"type": "string", "nullable": True}}},
    "DeepStackError": {"type": "object", "required": ["success", "error", "code"], "properties": {
        "success": {"type": "boolean"}, "error": {"type": "string"}, "code": {"type": "integer"}}},
    "DeepStackDetection": {"type": "object", "properties": {
        "success": {"type": "boolean"}, "message": {"type": "string"}, "count": {"type": "integer"},
        "predictions": {"type": "array", "description": "highest confidence first", "items": {
            "type": "object", "properties": {
                "label": {"type": "string"}, "confidence": {"type": "number"},
                **{k: {"type": "integer"} for k in ("x_min", "y_min", "x_max", "y_max")}}}},
        "inferenceMs": {"type": "integer"}, "processMs": {"type": "integer"}, "analysisRoundTripMs": {"type": "integer"}, "code": {"type": "integer"}}},
}


# --- faces: DeepStack's face API and /v2/faces (api/faces.py) -----------------------------------

def _face_form(required: list[str], **fields) -> dict:
    fields["api_key"] = {"type": "string", "description": "An API key when API_KEYS is set; read from this multipart body only"}
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": required, "properties": fields}}}}


_PHOTO = {"type": "string", "format": "binary", "description": "JPEG, PNG, BMP, GIF, WEBP or TIFF"}
_USERID = {"type": "string", "maxLength": 100, "description": "letters and digits of any script, spaces inside, "
                                                               "- _ . ' @ +; 'unknown' is reserved"}
_CORNERS = {k: {"type": "integer"} for k in ("x_min", "y_min", "x_max", "y_max")}
_TIMINGS = {k: {"type": "integer"} for k in ("inferenceMs", "processMs", "analysisRoundTripMs", "code")}


def _face_op(operation: str, summary: str, body: dict | None, answer: dict, *codes: int) -> dict:
    op = {"summary": summary, "operationId": operation,
          "responses": {"200": _json({"type": "object", "properties": {"success": {"type": "boolean"}, **answer}}),
                        **_deepstack_errors(*codes)}}
    return {"post": {**op, "requestBody": body} if body else op}


def _face_paths() -> dict:
    inference = (400, 401, 403, 413, 415, 500, 503, 504)
    predictions = lambda item: {"predictions": {"type": "array", "items": {"type": "object", "properties": item}},  # noqa: E731
                                "count": {"type": "integer"}, "message": {"type": "string"}, **_TIMINGS}
    detect = _face_op("faceDetect", "DeepStack face detection: the faces found, highest confidence first",
                      _face_form(["image"], image=_PHOTO, min_confidence={"type": "number", "minimum": 0, "maximum": 1,
                                                                          "default": 0.55}),
                      predictions({"confidence": {"type": "number"}, **_CORNERS}), *inference)
    return {
        "/v1/vision/face": detect, "/v1/vision/face/": {"post": {**detect["post"], "operationId": "faceDetectSlash"}},
        "/v1/vision/face/register": _face_op(
            "faceRegister", "Register a person's face: the largest face of each photo is added to userid",
            _face_form(["userid", "image"], userid=_USERID, image=_PHOTO,
                       image1={**_PHOTO, "description": "more photos: image1, image2, ... (any field names)"}),
            {"message": {"type": "string", "enum": ["face added", "face updated"]}, "userid": {"type": "string"},
             "faces": {"type": "integer"}, "used": {"type": "array", "items": {"type": "object"}},
             "skipped": {"type": "array", "items": {"type": "string"}}, **_TIMINGS}, *inference),
        "/v1/vision/face/recognize": _face_op(
            "faceRecognize", "Every face with its userid ('unknown', confidence 0, below min_confidence)",
            _face_form(["image"], image=_PHOTO, min_confidence={"type": "number", "minimum": 0, "maximum": 1,
                                                                "default": 0.67}),
            predictions({"userid": {"type": "string"}, "confidence": {"type": "number"}, **_CORNERS}), *inference),
        "/v1/vision/face/match": _face_op(
            "faceMatch", "Similarity (0-1; 0.67 at the model's same-person distance) of the largest faces of two photos",
            _face_form(["image1", "image2"], image1=_PHOTO, image2=_PHOTO),
            {"similarity": {"type": "number"}, "distance": {"type": "number"}, **_TIMINGS}, *inference),
        "/v1/vision/face/list": _face_op("faceList", "The registered userids", None, {
            "faces": {"type": "array", "items": {"type": "string"}}, "count": {"type": "integer"}}, 401, 403, 503),
        "/v1/vision/face/delete": _face_op(
            "faceDelete", "Delete every face of userid (success also for a userid not registered)",
            _face_form(["userid"], userid=_USERID), {"deleted": {"type": "integer"}}, 400, 401, 403, 503),
        "/v2/faces": {"post": {
            "summary": "Faces with identities in one image or a batch (multipart parts, URLs, base64)",
            "operationId": "facesV2",
            "parameters": [_query("min_confidence", {"type": "number", "minimum": 0, "maximum": 1, "default": 0.67},
                                  "Name a face only at this confidence or over")],
            "requestBody": _BATCH_BODY,
            "responses": {"200": _timed(_json(_ref("FacesV2"))), **_errors(*inference)}}},
    }


_FACE_SCHEMAS = {
    "FacesV2": {"type": "object", "properties": {
        "model": {"type": "string"}, "cached": {"type": "boolean"},
        "results": {"type": "array", "items": {"oneOf": [{"type": "object", "properties": {
            "width": {"type": "integer"}, "height": {"type": "integer"}, "cached": {"type": "boolean"},
            "faces": {"type": "array", "description": "largest first", "items": {"type": "object", "properties": {
                "box": {"type": "object", "properties": {k: {"type": "integer"} for k in ("x1", "y1", "x2", "y2")}},
                "score": {"type": "number", "description": "the detector's confidence"},
                "userid": {"type": "string", "nullable": True, "description": "null: unknown"},
                "confidence": {"type": "number"},
                "distance": {"type": "number", "nullable": True,
                             "description": "to the nearest registered face; null when nobody is registered"}}}}}},
            _ref("Error")]}}}},
}


# --- the Open Inference Protocol (api/open_inference.py) ---------------------------------------

def _oip_errors(*codes: int) -> dict:
    error = _json(_ref("OipError"), "An error, in the protocol's shape")
    return {str(code): error for code in codes}


_OIP_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "A configured model"}
_OIP_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "enum": ["1"]},
                "description": "Every model has one version, 1"}


def _oip_model_paths(suffix: str, method: str, operation_id: str, operation: dict) -> dict:
    """/v2/models/{name}<suffix> and its /versions/{version} twin."""
    return {f"/v2/models/{{name}}{suffix}": {method: {
                **operation, "operationId": operation_id, "parameters": [_OIP_NAME]}},
            f"/v2/models/{{name}}/versions/{{version}}{suffix}": {method: {
                **operation, "operationId": operation_id + "Version", "parameters": [_OIP_NAME, _OIP_VERSION]}}}


def _open_inference_paths() -> dict:
    open_route = {"security": []}
    infer_body = {"required": True, "description": (
        "The protocol's JSON request; with binary tensors (Inference-Header-Content-Length) the JSON header is "
        "followed by the tensors' bytes. One input: 'image' BYTES [N] of encoded images (binary: the files' bytes; "
        "JSON: base64 text), or the network's own tensor as the model's metadata lists it. Request parameters for "
        "detectors: min_score (default 0.3), max_detections, classes. At most MAX_UPLOAD_MB, "
        "MAX_IMAGES_PER_REQUEST images."), "content": {
        "application/json": {"schema": _ref("InferRequest")},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    infer_ok = {"description": "The outputs (binary ones after the JSON header, whose length "
                               "Inference-Header-Content-Length gives)",
                "headers": {HEADER_LENGTH: {"description": "present when some output is binary",
                                            "schema": {"type": "integer"}}, **_SERVER_TIMING},
                "content": {"application/json": {"schema": _ref("InferResponse")},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    paths = {
        "/v2/health/live": {"get": {**open_route, "summary": "Open Inference Protocol: liveness", "operationId": "oipLive",
                                    "responses": {"200": _json({"type": "object", "properties": {"live": {"type": "boolean"}}})}}},
        "/v2/health/ready": {"get": {**open_route, "summary": "Open Inference Protocol: readiness (as /ready)",
                                     "operationId": "oipReady", "responses": {
                                         "200": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
                                         "503": _json({"type": "object", "properties": {
                                             "ready": {"type": "boolean"}, "error": {"type": "string"}}}, "Not ready")}}},
        "/v2": {"get": {"summary": "Open Inference Protocol: server metadata and extensions", "operationId": "oipServer",
                        "responses": {"200": _json({"type": "object", "properties": {
                            "name": {"type": "string"}, "version": {"type": "string"},
                            "extensions": {"type": "array", "items": {"type": "string"}}}}), **_oip_errors(401)}}},
    }
    models = (
        ("", "get", "oipModel", {"summary": "Open Inference Protocol: a model's metadata (its tensors)",
                                 "responses": {"200": _json(_ref("ModelMetadata")), **_oip_errors(401, 404, 503)}}),
        ("/ready", "get", "oipModelReady", {**open_route, "summary": "Open Inference Protocol: a model's readiness",
                                            "responses": {"200": _json({"type": "object"}), **_oip_errors(404, 503)}}),
        ("/config", "get", "oipModelConfig", {
            "summary": "Open Inference Protocol: a model's configuration (Triton's model_config as JSON)",
            "responses": {"200": _json({"type": "object"}), **_oip_errors(401, 404, 503)}}),
        ("/infer", "post", "oipInfer", {
            "summary": "Open Inference Protocol: inference", "requestBody": infer_body,
            "responses": {"200": infer_ok, **_oip_errors(400, 401, 404, 413, 415, 500, 502, 503, 504)}}))
    for model_route in models:
        paths.update(_oip_model_paths(*model_route))
    return paths


_OIP_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string", "enum": [*V2_TYPES, BYTES]},
    "shape": {"type": "array", "items": {"type": "integer"}}}}
_OIP_SCHEMAS = {
    "OipError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "ModelMetadata": {"type": "object", "properties": {
        "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _OIP_TENSOR}, "outputs": {"type": "array", "items": _OIP_TENSOR}}},
    "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"allOf": [_OIP_TENSOR, {
            "type": "object", "properties": {"data": {"type": "array", "items": {}},
                                             "parameters": {"type": "object"}}}]}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object", "properties": {
                "binary_data": {"type": "boolean"}, "classification": {"type": "integer", "minimum": 1}}}}}}}},
    "InferResponse": {"type": "object", "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"allOf": [_OIP_TENSOR, {"type": "object", "properties": {
            "data": {"type": "array", "items": {}}, "parameters": {"type": "object"}}}]}}}},
}


def openapi_document(app: Flask) -> dict:
    settings = app.extensions["settings"]
    open_route = {"security": []}
    paths = {
        "/health": {"get": {**open_route, "summary": "Liveness", "operationId": "health",
                            "responses": {"200": _json({"type": "object", "properties": {"status": {"type": "string"}}})}}},
        "/ready": {"get": {**open_route, "summary": "Readiness: 200 once every configured model is loaded",
                           "operationId": "ready",
                           "responses": {"200": _json(_ref("Readiness")),
                                         "503": _json(_ref("Readiness"), "Not every model is loaded")}}},
        "/status": {"get": {"summary": "Features, models, their state and memory", "operationId": "status",
                            "responses": {"200": _json({"type": "object"}), **_errors(401)}}},
        "/models": {"get": {"summary": "Every configured model", "operationId": "listModels",
                            "responses": {"200": _json({"type": "object", "properties": {
                                "models": {"type": "array", "items": _ref("ModelInfo")}}}), **_errors(401)}}},
        "/models/{name}": {"get": {"summary": "One model's configuration", "operationId": "modelInfo",
                                   "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                                   "responses": {"200": _json(_ref("ModelInfo")), **_errors(401, 404)}}},
        "/models/{name}/labels": {"get": {"summary": "One model's labels", "operationId": "modelLabels",
                                          "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                                          "responses": {"200": _json({"type": "object", "properties": {
                                              "name": {"type": "string"},
                                              "labels": {"type": "array", "items": {"type": "string"}}}}),
                                              **_errors(401, 404)}}},
        "/classify-image": {"post": {
            "summary": "Classify one image (v1 shape: [label, percentage] pairs)", "operationId": "classifyImage",
            "parameters": [_query("top_k", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "How many labels"), _MODEL],
            "requestBody": _SINGLE_IMAGE_BODY,
            "responses": {"200": _timed(_json({"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                                                          "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}}},
                                              "[[label, percentage 0-100], ...], highest first")),
                          **_errors(400, 401, 403, 404, 413, 415, 500, 502, 503, 504)}}},
        "/detect-objects": {"post": {
            "summary": "Detect objects in one image (v1 shape, ImageAI's)", "operationId": "detectObjects",
            "parameters": [_query("min_probability", {"type": "number", "minimum": 0, "maximum": 100, "default": 30}, "Percent"), _MODEL],
            "requestBody": _SINGLE_IMAGE_BODY,
            "responses": {"200": _timed(_json({"type": "array", "items": _ref("DetectionV1")})),
                          **_errors(400, 401, 403, 404, 413, 415, 500, 502, 503, 504)}}},
        "/v2/classify": {"post": {
            "summary": "Classify one image or a batch", "operationId": "classifyV2",
            "parameters": [_query("top_k", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5}, "Predictions per image"),
                           _query("min_score", {"type": "number", "minimum": 0, "maximum": 1, "default": 0}, "Drop predictions below"),
                           _MODEL],
            "requestBody": _BATCH_BODY,
            "responses": {"200": _timed(_json(_ref("ClassifyV2"))), **_errors(400, 401, 403, 404, 413, 415, 500, 502, 503, 504)}}},
        "/v2/detect": {"post": {
            "summary": "Detect objects in one image or a batch; annotate=true answers the drawn image",
            "operationId": "detectV2",
            "parameters": [_query("min_score", {"type": "number", "minimum": 0, "maximum": 1, "default": 0.3}, "Score 0-1"),
                           _query("max_detections", {"type": "integer", "minimum": 1, "maximum": 10000}, "Per image"),
                           _query("classes", {"type": "string"}, "Comma-separated labels to keep"),
                           _query("annotate", {"type": "boolean", "default": False}, "Answer image/jpeg with the detections drawn (one image)"),
                           _MODEL],
            "requestBody": _BATCH_BODY,
            "responses": {"200": {"description": "Detections, or the annotated JPEG (at most 4 MP, at most 300 boxes drawn)",
                                  "headers": {**_ANNOTATE_HEADERS, **_SERVER_TIMING}, "content": {
                "application/json": {"schema": _ref("DetectV2")},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors(400, 401, 403, 404, 413, 415, 500, 502, 503, 504)}}},
        "/report": {"get": {"summary": f"Usage over the last MONITOR_WINDOW seconds ({settings.monitor_window})",
                            "operationId": "report", "responses": {"200": _json(_ref("Report")), **_errors(401)}}},
        "/metrics": {"get": {**open_route, "summary": "Prometheus metrics", "operationId": "metrics",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        # The API's description is public (no key): /docs loads, and its "Authorize" button takes the key.
        "/openapi.json": {"get": {**open_route, "summary": "This document", "operationId": "openapi",
                                  "responses": {"200": _json({"type": "object"})}}},
        "/docs": {"get": {**open_route, "summary": "Swagger UI for this document", "operationId": "docs",
                          "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/docs/static/{filename}": {"get": {**open_route, "summary": "Swagger UI assets", "operationId": "docsStatic",
                                            "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
                                            "responses": {"200": {"description": "A static file"}, **_errors(404)}}},
        # The service's web page: the same for everyone and public (its key field sends the key).
        "/": {"get": {**open_route, "summary": "The web page: classify, detect, benchmark, dashboard (calls this API)",
                      "operationId": "page",
                      "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/page/{filename}": {"get": {**open_route, "summary": "The web page's scripts, stylesheet and icon",
                                     "operationId": "pageAsset",
                                     "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
                                     "responses": {"200": {"description": "A static file (ETag; 304 when unchanged)"},
                                                   "304": {"description": "Not modified"}, **_errors(404)}}},
    }
    stats = {"type": "object", "properties": {
        "num_requested": {"type": "integer"}, "num_cache_hits": {"type": "integer"}, "num_errors": {"type": "integer"},
        "processing_time_min": {"type": "number", "nullable": True},
        "processing_time_max": {"type": "number", "nullable": True},
        "processing_time_mean": {"type": "number", "nullable": True}}}
    error_entry = _ref("Error")
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "type", "message"], "properties": {
                "code": {"type": "integer"}, "type": {"type": "string"}, "message": {"type": "string"}}}}},
        "ImageReference": {"type": "object", "properties": {
            "image_url": {"type": "string", "format": "uri", "maxLength": 4096},
            "image_base64": {"type": "string", "format": "byte"}},
            "description": "exactly one of image_url or image_base64"},
        "DetectionV1": {"type": "object", "properties": {
            "name": {"type": "string"}, "percentage_probability": {"type": "number"},
            "box_points": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4}}},
        "Detection": {"type": "object", "properties": {
            "label": {"type": "string"}, "score": {"type": "number"},
            "box": {"type": "object", "properties": {k: {"type": "integer"} for k in ("x1", "y1", "x2", "y2")}}}},
        "ClassifyV2": {"type": "object", "properties": {
            "model": {"type": "string"}, "cached": {"type": "boolean"},
            "results": {"type": "array", "items": {"oneOf": [{"type": "object", "properties": {
                "width": {"type": "integer"}, "height": {"type": "integer"}, "cached": {"type": "boolean"},
                "predictions": {"type": "array", "items": {"type": "object", "properties": {
                    "label": {"type": "string"}, "class_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                    "score": {"type": "number"}}}}}}, error_entry]}}}},
        "DetectV2": {"type": "object", "properties": {
            "model": {"type": "string"}, "cached": {"type": "boolean"},
            "results": {"type": "array", "items": {"oneOf": [{"type": "object", "properties": {
                "width": {"type": "integer"}, "height": {"type": "integer"}, "cached": {"type": "boolean"},
                "detections": {"type": "array", "items": _ref("Detection")}}}, error_entry]}}}},
        "ModelInfo": {"type": "object", "properties": {
            "name": {"type": "string"}, "task": {"type": "string"}, "format": {"type": "string"},
            "input_size": {"type": "array", "items": {"type": "integer"}, "nullable": True},
            "num_labels": {"type": "integer"}, "state": {"type": "string"}}},
        "Readiness": {"type": "object", "properties": {
            "status": {"type": "string"}, "models": {"type": "object"}}},
        "Report": {"type": "object", "properties": {
            "window_seconds": {"type": "number"}, "distinct_images": {"type": "integer"},
            "images": {"type": "array", "items": {"allOf": [{"type": "object", "properties": {"key": {"type": "string"}}}, stats]}},
            "models": {"type": "object", "additionalProperties": stats},
            "routes": {"type": "object", "additionalProperties": stats},
            "series": {"type": "object", "description": "requests and errors per minute over the last 60 minutes "
                                                        "(every minute listed, oldest first; none before the window)",
                       "properties": {
                           "minutes": {"type": "array", "items": {"type": "integer"}, "description": "epoch seconds // 60"},
                           "requests": {"type": "array", "items": {"type": "integer"}},
                           "errors": {"type": "array", "items": {"type": "integer"}}}},
            # With REDIS_URL: the whole deployment's counts (shared), or not all of them (partial).
            "shared": {"type": "boolean"}, "partial": {"type": "boolean"}}},
    }
    paths.update(_deepstack_paths())
    paths.update(_codeproject_status_paths())
    schemas.update(_DEEPSTACK_SCHEMAS)
    paths.update(_face_paths())
    schemas.update(_FACE_SCHEMAS)
    paths.update(_open_inference_paths())
    schemas.update(_OIP_SCHEMAS)
    document = {
        "openapi": "3.0.3",
        "info": {"title": SERVICE_NAME, "version": VERSION,
                 "description": "Image classification and object detection on your own machines."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": _ref("Error")}}}},
                       "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                           "bearer": {"type": "http", "scheme": "bearer"}}},
    }
    if settings.api_keys:   # every route but the open ones (security: []) takes either; Swagger UI's Authorize sends it
        document["security"] = [{"apiKey": []}, {"bearer": []}]
    return document
