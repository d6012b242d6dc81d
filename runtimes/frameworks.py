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

torch's CPU threads are OpenMP's (libgomp). Unless told otherwise, an OpenMP worker that
finishes a parallel operation spins before it sleeps: ~8 ms of a core after every operation on
the development machine. Where torch only decodes and filters around another runtime's network
(YOLO's detection layers and NMS around OpenVINO), those spinning threads took the cores from
the next network call: TinyYOLOv3's predict() took 34.9 ms with them, 31.0 ms without. So
OMP_WAIT_POLICY is PASSIVE (workers sleep at once) unless the deployment set it; torch's own
networks ran as fast either way (TinyYOLOv3 60.3 / 59.9 ms, RetinaNet 2.90 / 2.91 s). It has
to be in the environment before torch loads libgomp, so it is set just before the import.
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
# libgomp's wait policy for torch's threads, unless the environment names one (see above).
OPENMP_WAIT_POLICY = "PASSIVE"
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


def require(needed: set[str]) -> None:
    unknown = set(needed) - set(_ORDER)
    if unknown:
        raise ValueError(f"unknown frameworks: {sorted(unknown)}")
    with _lock:
        imported = False
        for framework in (TORCH, TENSORFLOW):  # torch stack first, always
            if framework in needed and framework not in _done:
                if framework == TORCH:
                    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)
                for module in _ORDER[framework]:
                    importlib.import_module(module)
                _configure(framework)
                _done.add(framework)
                imported = True
        if imported:
            gc.freeze()
