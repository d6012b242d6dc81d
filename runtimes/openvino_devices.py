"""Which OpenVINO device runs the networks (OPENVINO_DEVICE): CPU, the default; a device of this
host (GPU, GPU.1, NPU); AUTO, OpenVINO's choice among them; or a list OpenVINO takes
(AUTO:GPU,CPU, AUTO:-CPU, MULTI:GPU,CPU, HETERO:GPU,CPU). Device names are OpenVINO's, in
capitals (the setting is read without regard to case).

A device this host does not have stops the start, naming the devices OpenVINO sees here: OpenVINO
would otherwise fail each model's compile (and the model fall back to its framework) or, for a
GPU in an AUTO list, fail or silently use the CPU depending on the host's OpenCL library. Here are
the rules, with no OpenVINO object: runtimes.openvino asks OpenVINO and compiles.
"""
from __future__ import annotations

import re

CPU = "CPU"
# Modes that spread a network over other devices: `MODE` alone (AUTO) or `MODE:DEVICE,DEVICE`.
MODES = ("AUTO", "MULTI", "HETERO")
# A hardware device, optionally with its number (GPU.1); not a mode, not BATCH (automatic
# batching: these networks are compiled for one image, or batch in Python).
_DEVICE = re.compile(r"[A-Z]+(?:\.[0-9]+)?")
HOW_TO = "use CPU, AUTO, a device of this host (GPU, GPU.1, NPU) or a list such as AUTO:GPU,CPU"


def split(device: str) -> tuple[str | None, list[str]]:
    """(mode or None, the devices named): 'AUTO:GPU,CPU' → ('AUTO', ['GPU', 'CPU']); 'GPU' →
    (None, ['GPU']); 'AUTO' → ('AUTO', [])."""
    head, colon, rest = device.partition(":")
    if colon:
        return head, rest.split(",")
    return (head, []) if head in MODES else (None, [head])


def syntax_problem(device: str) -> str | None:
    """Why `device` is not a device OpenVINO would take, or None."""
    mode, names = split(device)
    if mode is not None and mode not in MODES:
        return f"{mode} is not one of OpenVINO's modes ({', '.join(MODES)}); {HOW_TO}"
    if mode in ("MULTI", "HETERO") and not names:
        return f"{mode} needs the devices it spreads over, e.g. {mode}:GPU,CPU"
    for name in names:
        bare = name[1:] if mode == "AUTO" and name.startswith("-") else name   # AUTO:-CPU excludes the CPU
        if not _DEVICE.fullmatch(bare) or bare in MODES or bare == "BATCH":
            return f"{name!r} is not a device name; {HOW_TO}"
    if len({name.lstrip("-") for name in names}) != len(names):
        return "it names a device twice"
    return None


def sees(name: str, available: list[str]) -> bool:
    """Whether a device OpenVINO lists as `available` answers to `name`: GPU matches GPU.0 and
    GPU.1 on a host with two; GPU.0 matches the GPU of a host with one (listed as GPU)."""
    kind, _, number = name.partition(".")
    return (name in available or (not number and any(a.partition(".")[0] == kind for a in available))
            or (number == "0" and kind in available))


def availability_problem(device: str, available: list[str], names: dict[str, str]) -> str | None:
    """Why `device` cannot run on a host whose OpenVINO lists `available` (with their full
    names, `names`), or None. Every device named must be there (a device AUTO excludes need
    not), and something must be left to run on."""
    mode, wanted = split(device)
    missing = [name for name in wanted if not name.startswith("-") and not sees(name, available)]
    excluded = [name[1:] for name in wanted if name.startswith("-")]
    left = [a for a in available if not any(sees(x, [a]) for x in excluded)]
    if not missing and left:
        return None
    seen = ", ".join(f"{a} ({names[a]})" if names.get(a) else a for a in available) or "none"
    why = (f"OpenVINO sees no {' or '.join(missing)} on this host" if missing
           else "that leaves no device OpenVINO sees on this host")
    return f"{why}; the devices it sees: {seen}. Use one of them, AUTO, or a list of them such as AUTO:GPU,CPU"


def compile_config(device: str, precision: str, threads: int) -> dict:
    """compile_model's configuration: one image at a time (LATENCY) at `precision`. On the CPU
    alone, its thread count too. Elsewhere the CPU's settings go under DEVICE_PROPERTIES, which
    OpenVINO applies where (and only where) the CPU runs the network: a GPU or NPU plugin
    refuses a CPU-only property such as INFERENCE_NUM_THREADS."""
    cpu = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads}
    if device == CPU:
        return {"PERFORMANCE_HINT": "LATENCY", **cpu}
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision, "DEVICE_PROPERTIES": {CPU: cpu}}


def cache_tag(device: str) -> str:
    """The device's part of a converted-model cache key, safe in a file name and one to one with
    the setting: 'CPU' → 'cpu', 'AUTO:GPU,CPU' → 'auto_gpu+cpu', 'AUTO:-CPU' → 'auto_nocpu'."""
    return device.lower().replace("-", "no").replace(":", "_").replace(",", "+")


def described(execution_devices: list[str]) -> str:
    """/models' `device` for a network OpenVINO runs: where it runs now, as OpenVINO's
    EXECUTION_DEVICES says, in lower case as /models writes devices (cpu, gpu.0, cpu,gpu.0; AUTO
    says (cpu) while the CPU stands in for a device still compiling)."""
    return ",".join(execution_devices).lower()
