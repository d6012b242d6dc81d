"""Double Take's DeepStack detector (jakowenko/double-take @ 8e2728d, v1.13.1:
api/src/util/detectors/deepstack.js, its defaults in api/src/constants/defaults.js, training in
api/src/util/train.util.js), its requests and its parsing kept as Double Take has them, so tests
call the service the way Double Take does. Double Take is JavaScript (axios + form-data); the
same multipart fields, statuses and reading are replayed here with requests."""
from __future__ import annotations

import requests

# defaults.js: detect.match / detect.unknown, detectors.deepstack.timeout.
MATCH = {"CONFIDENCE": 60, "MIN_AREA": 10000}
UNKNOWN = {"CONFIDENCE": 40, "MIN_AREA": 0}
TIMEOUT = 15


class DoubleTakeDeepStack:
    def __init__(self, url: str, key: str = ""):
        self.url, self.key = url, key

    def _form(self, **fields) -> dict:
        if self.key:                                  # `if (KEY) formData.append('api_key', KEY)`
            fields["api_key"] = self.key
        return fields

    def recognize(self, image: bytes) -> requests.Response:
        """POST /v1/vision/face/recognize: file `image`, no min_confidence; any status is read
        (`validateStatus() { return true }`)."""
        return requests.post(f"{self.url}/v1/vision/face/recognize", data=self._form(),
                             files={"image": ("image.jpg", image)}, timeout=TIMEOUT)

    def train(self, name: str, image: bytes) -> dict:
        """train.util.js `process`: one request per image; a non-2xx status throws in axios and is
        stored as {...data, status}; the UI shows a training as done iff the status starts with 2."""
        response = requests.post(f"{self.url}/v1/vision/face/register", data=self._form(userid=name),
                                 files={"image": ("image.jpg", image)}, timeout=TIMEOUT)
        data = response.json()
        return {**(data if isinstance(data, dict) else {"data": data}), "status": response.status_code}

    def remove(self, name: str) -> requests.Response:
        """POST /v1/vision/face/delete: form-data's multipart body with `userid` (and `api_key`), no file."""
        fields = {key: (None, value) for key, value in self._form(userid=name).items()}
        return requests.post(f"{self.url}/v1/vision/face/delete", files=fields, timeout=TIMEOUT)

    @staticmethod
    def normalize(data: dict) -> list[dict]:
        """deepstack.js `normalize` with actions.checks, for the default camera config."""
        if data.get("success") is False:
            return []
        normalized = []
        for obj in data["predictions"]:
            confidence = round(obj["confidence"] * 100, 2)   # parseFloat((obj.confidence * 100).toFixed(2))
            width, height = obj["x_max"] - obj["x_min"], obj["y_max"] - obj["y_min"]
            output = {"name": obj["userid"].lower() if confidence >= UNKNOWN["CONFIDENCE"] else "unknown",
                      "confidence": confidence,
                      "match": obj["userid"] != "unknown" and confidence >= MATCH["CONFIDENCE"]
                      and width * height >= MATCH["MIN_AREA"],
                      "box": {"top": obj["y_min"], "left": obj["x_min"], "width": width, "height": height}}
            checks = _checks(output)
            if checks is False:
                continue
            if checks:
                output["checks"] = checks
            normalized.append(output)
        return normalized


def _checks(output: dict):
    """actions/index.js `checks`."""
    area = output["box"]["width"] * output["box"]["height"]
    if output["name"] == "unknown" and area < UNKNOWN["MIN_AREA"]:
        return False
    checks = []
    if output["name"] == "unknown" and output["confidence"] < UNKNOWN["CONFIDENCE"]:
        checks.append(f"confidence too low: {output['confidence']} < {UNKNOWN['CONFIDENCE']}")
    else:
        if output["confidence"] < MATCH["CONFIDENCE"]:
            checks.append(f"confidence too low: {output['confidence']} < {MATCH['CONFIDENCE']}")
        if area < MATCH["MIN_AREA"]:
            checks.append(f"box area too low: {area} < {MATCH['MIN_AREA']}")
    return checks
