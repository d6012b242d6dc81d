"""Imports the deep-learning frameworks once, in the only order that works in one process.

`import tensorflow` followed by `import torchvision` segfaults (triton's shared library), and
importing torch alone first is not enough: torch, torchvision and imageai must all be loaded
before tensorflow. Every model load goes through `require`, which imports every framework the
configured models need, so the first model to load decides nothing about the order.

The frameworks' own objects (millions: modules, functions, op registries) live as long as the
process. Once they are imported they are frozen out of the garbage collector's reach
(`gc.freeze`), so a full collection no longer walks them all: on the development machine one
such walk cost 0.15 s of every OpenVINO start (it fell inside `import openvino`), and it also
paused whatever request was running when it came.

torch's CPU threads are OpenMP's (libgomp). An OpenMP worker that finishes a parallel operation
spins before it sleeps, by default 300,000 rounds: ~8 ms of a core after every operation on the
development machine. Where OpenVINO runs the network and torch only decodes and filters around
it (YOLO's detection layers and NMS), those spinning workers took the cores from the next
network call. So with INFERENCE_RUNTIME=openvino they spin 3,000 rounds (GOMP_SPINCOUNT),
~0.1 ms: TinyYOLOv3's predict() on OpenVINO took 47.9 ms with libgomp's default and 34.0 ms
with the short spin (`python -m bench.openmp`, docs/benchmarks.md). Sleeping at once
(OMP_WAIT_POLICY=PASSIVE) did as well there, but made torch's own networks slower. Inside a
forward pass the next operation comes within microseconds, and a short spin still cost torch's
YOLOv3 forward 3-5 %. So where torch runs the networks (INFERENCE_RUNTIME=tensorflow) libgomp
keeps its default. It is set just before torch loads libgomp, and never where the deployment set
OMP_WAIT_POLICY or GOMP_SPINCOUNT itself.
"""
from __future__ import annotations

import gc
import importlib
import os
import threading

TORCH = "torch"
TENSORFLOW = "tensorflow"

_ORDER = {
    TORCH: ("torch", "torchvision", "imageai.Detection"),
    TENSORFLOW: ("tensorflow", "keras"),
}
# How long torch's idle OpenMP workers spin before they sleep, unless the environment says (above).
OPENMP_SPIN_COUNT = "3000"
_lock = threading.Lock()
_done: set[str] = set()
_threads = {"intra": 0, "inter": 1}
# INFERENCE_RUNTIME and INFERENCE_PRECISION: read by the built-in models when they are created.
_inference = {"runtime": "openvino", "precision": "f32"}


def set_threads(intra: int, inter: int) -> None:
    """Thread pools for the frameworks imported from now on (process-wide, like the pools).
    intra 0 means the CPU count."""
    _threads.update(intra=intra, inter=inter)


def set_inference(runtime: str, precision: str) -> None:
    """What runs the built-in networks from now on: "openvino" or their framework ("tensorflow":
    TensorFlow for the classifiers, torch for the detectors), and OpenVINO's precision."""
    _inference.update(runtime=runtime, precision=precision)


def inference_runtime() -> str:
    return _inference["runtime"]


def inference_precision() -> str:
    return _inference["precision"]


def intra_op_threads() -> int:
    return _threads["intra"] or len(os.sched_getaffinity(0)) or 1


def _configure(framework: str) -> None:
    intra, inter = intra_op_threads(), _threads["inter"]
    if framework == TORCH:
        import torch
        torch.set_num_threads(intra)
        torch.set_num_interop_threads(inter)
        # Full float32 convolutions on a GPU, as on the CPU: cuDNN's default TF32 keeps 10 bits
        # of mantissa, so answers would differ from the CPU's and with the batch size.
        torch.backends.cudnn.allow_tf32 = False
    elif framework == TENSORFLOW:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def import_failure(exc: Exception) -> str:
    """The reason to report when importing a framework failed (a missing system library, say):
    the module that failed, never advice about weight files."""
    module = getattr(exc, "name", None) or "a framework module"
    return (f"a framework the model needs could not be imported ({type(exc).__name__} while "
            f"importing {module}); the installation is incomplete, the weights are not at fault")


def _short_openmp_spin() -> None:
    """GOMP_SPINCOUNT for torch's libgomp where OpenVINO runs the networks, read when torch loads
    it; a deployment's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is."""
    if _inference["runtime"] != "openvino":
        return
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


def require(needed: set[str]) -> None:
    unknown = set(needed) - set(_ORDER)
    if unknown:
        raise ValueError(f"unknown frameworks: {sorted(unknown)}")
    with _lock:
        imported = False
        for framework in (TORCH, TENSORFLOW):  # torch stack first, always
            if framework in needed and framework not in _done:
                if framework == TORCH:
                    _short_openmp_spin()
                for module in _ORDER[framework]:
                    importlib.import_module(module)
                _configure(framework)
                _done.add(framework)
                imported = True
        if imported:
            gc.freeze()
