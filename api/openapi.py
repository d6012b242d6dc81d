"""The OpenAPI 3.0 document of every route. Validated with openapi-spec-validator in the
tests, and a test checks that every registered Flask route appears here."""
from __future__ import annotations

from flask import Flask

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
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image"], "properties": fields}}}}


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


_DEEPSTACK_SCHEMAS = {
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
    schemas.update(_DEEPSTACK_SCHEMAS)
    paths.update(_open_inference_paths())
    schemas.update(_OIP_SCHEMAS)
    document = {
        "openapi": "3.0.3",
        "info": {"title": "image-classification-service", "version": "1.0.0",
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
