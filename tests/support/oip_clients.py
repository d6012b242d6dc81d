"""Real Open Inference Protocol clients, unmodified, driven against the service for the tests:
`triton` is tritonclient[http] (its own virtualenv, .venv-clients: requirements-clients.txt),
`kserve` is KServe's InferenceRESTClient (protocol v2; .venv-engine has kserve). Imports nothing
from the project.

Reads a job from standard input and writes one result per call to standard output, as JSON:

    {"url": "http://127.0.0.1:5001", "headers": {"X-API-Key": "..."}, "calls": [
        {"call": "live"}, {"call": "ready"}, {"call": "model_ready", "model": "m"},
        {"call": "server_metadata"}, {"call": "model_metadata", "model": "m"}, {"call": "model_config", "model": "m"},
        {"call": "infer", "model": "m", "input": "image", "datatype": "BYTES", "files": ["a.jpg"] | "npy": "x.npy",
         "binary": true, "outputs": [{"name": "probabilities", "classification": 5}] | null,
         "binary_outputs": true, "parameters": {"min_score": 0.3}}]}

Each result is {"value": ...} or {"error": "<exception type>: <message>"}; an inference's value
is {"model_name", "outputs": {name: {"datatype", "shape", "data"}}} with BYTES as text.

    .venv-clients/bin/python -P tests/support/oip_clients.py triton < job.json
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys

import numpy as np


def _input_array(call: dict) -> np.ndarray:
    """The input's data: the image files' bytes (base64 text when sent as JSON), or a .npy tensor."""
    if "npy" in call:
        return np.load(call["npy"])
    images = [open(path, "rb").read() for path in call["files"]]
    if not call["binary"]:
        images = [base64.b64encode(image) for image in images]
    return np.array(images, dtype=np.object_)


def _plain(array: np.ndarray) -> list:
    if array.dtype == np.object_:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    return array.ravel().tolist()


def triton(job: dict) -> list:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=job["url"].removeprefix("http://"), network_timeout=120)
    # A copy per call: tritonclient writes Inference-Header-Content-Length into the dict it is given,
    # which a later JSON request would then carry too.
    given = job.get("headers") or {}

    def infer(call):
        array = _input_array(call)
        tensor = httpclient.InferInput(call["input"], list(array.shape), call["datatype"])
        tensor.set_data_from_numpy(array, binary_data=call["binary"])
        outputs = None
        if call.get("outputs") is not None:
            outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=call["binary_outputs"],
                                                       class_count=o.get("classification", 0))
                       for o in call["outputs"]]
        result = client.infer(call["model"], [tensor], outputs=outputs, headers=dict(given),
                              parameters=call.get("parameters"))
        response = result.get_response()
        return {"model_name": response.get("model_name"),
                "outputs": {o["name"]: {"datatype": o["datatype"], "shape": o["shape"],
                                        "data": _plain(result.as_numpy(o["name"]))} for o in response["outputs"]}}

    calls = {
        "live": lambda c: client.is_server_live(headers=dict(given)),
        "ready": lambda c: client.is_server_ready(headers=dict(given)),
        "model_ready": lambda c: client.is_model_ready(c["model"], c.get("version", ""), headers=dict(given)),
        "server_metadata": lambda c: client.get_server_metadata(headers=dict(given)),
        "model_metadata": lambda c: client.get_model_metadata(c["model"], c.get("version", ""), headers=dict(given)),
        "model_config": lambda c: client.get_model_config(c["model"], c.get("version", ""), headers=dict(given)),
        "infer": infer,
    }
    try:
        return [_result(calls[call["call"]], call) for call in job["calls"]]
    finally:
        client.close()


def kserve(job: dict) -> list:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120, retries=0))
        url, headers = job["url"], job.get("headers") or {}

        async def infer(call):
            array = _input_array(call)
            tensor = InferInput(call["input"], list(array.shape), call["datatype"])
            tensor.set_data_from_numpy(array, binary_data=call["binary"])
            outputs = None
            if call.get("outputs") is not None:
                outputs = [RequestedOutput(o["name"], {"binary_data": call["binary_outputs"],
                                                       **({"classification": o["classification"]}
                                                          if "classification" in o else {})})
                           for o in call["outputs"]]
            parameters = dict(call.get("parameters") or {})
            if call.get("outputs") is None:
                parameters["binary_data_output"] = call["binary_outputs"]
            request = InferRequest(model_name=call["model"], infer_inputs=[tensor], request_outputs=outputs,
                                   parameters=parameters or None)
            response = await client.infer(url, request, model_name=call["model"], headers=dict(headers))
            return {"model_name": response.model_name,
                    "outputs": {o.name: {"datatype": o.datatype, "shape": list(o.shape), "data": _plain(o.as_numpy())}
                                for o in response.outputs}}

        calls = {
            "live": lambda c: client.is_server_live(url, headers=dict(headers)),
            "ready": lambda c: client.is_server_ready(url, headers=dict(headers)),
            "model_ready": lambda c: client.is_model_ready(url, c["model"], headers=dict(headers)),
            "infer": infer,
        }
        results = []
        for call in job["calls"]:
            try:
                results.append({"value": await calls[call["call"]](call)})
            except Exception as exc:  # reported to the test, which says what it expected
                results.append({"error": f"{type(exc).__name__}: {exc}"})
        await client.close()
        return results

    return asyncio.run(run())


def _result(function, call: dict) -> dict:
    try:
        return {"value": function(call)}
    except Exception as exc:  # reported to the test, which says what it expected
        return {"error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    json.dump({"triton": triton, "kserve": kserve}[sys.argv[1]](json.load(sys.stdin)), sys.stdout)
