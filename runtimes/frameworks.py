"""Imports the deep-learning frameworks once, in the only order that works in one process.

`import tensorflow` followed by `import torchvision` segfaults (triton's shared library), and
importing torch alone first is not enough: torch, torchvision and imageai must all be loaded
before tensorflow. A model that serves from its converted-model cache needs neither (the
steps around OpenVINO's networks are numpy); one that must convert, or run on its framework,
raises contract.FrameworksNeeded, and the registry then calls `require` with every framework
the configured models need, so the first model to load decides nothing about the order.

The frameworks' own objects (millions: modules, functions, op registries) live as long as the
process. Once they are imported they are frozen out of the garbage collector's reach
(`gc.freeze`), so a full collection no longer walks them all: such a walk fell inside whatever
ran next (an OpenVINO start, a request) and paused it.

torch's CPU threads are OpenMP's (libgomp). An OpenMP worker that finishes a parallel operation
spins before it sleeps (by default 300,000 rounds). Where torch is loaded in a process whose
networks OpenVINO runs (it converted them, or a model stayed on torch), those spinning workers
take the cores from the next network call, so with OpenVINO running the networks they spin
3,000 rounds (GOMP_SPINCOUNT). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) did as well there
but made torch's own networks slower, and inside a forward pass even a short spin costs torch a
little: where torch runs the networks, libgomp keeps its default. It is set just before torch
loads libgomp, and never where the deployment set OMP_WAIT_POLICY or GOMP_SPINCOUNT itself.
(docs/performance.md has the measurements: `python -m bench.openmp`.)

The thread counts and the runtime choice come from the caller (contract.InferenceOptions); the
pools they set are process-wide, as the frameworks' own are, and set once, at the import.
"""
from __future__ import annotations

import gc
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import threading

from contract import OPENVINO, InferenceOptions, ModelUnavailable

log = logging.getLogger(__name__)

TORCH = "torch"
TENSORFLOW = "tensorflow"

_ORDER = {
    TORCH: ("torch", "torchvision", "imageai.Detection"),
    TENSORFLOW: ("tensorflow", "keras"),
}
# Where a GPU driver shows itself (NVIDIA's; AMD's ROCm, which torch.cuda also drives): without any
# of these no framework can see a GPU, so a model need not import its framework to ask.
_GPU_DRIVERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")
# The distributions whose versions shape a network converted from each framework's model (part
# of the converted-model cache key).
CONVERTERS = {TORCH: ("torch", "imageai"), TENSORFLOW: ("keras",)}
# How long torch's idle OpenMP workers spin before they sleep, unless the environment says (above).
OPENMP_SPIN_COUNT = "3000"
_lock = threading.Lock()
_done: set[str] = set()


def _configure(framework: str, options: InferenceOptions) -> None:
    intra, inter = options.threads, options.inter_op_threads
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


def _short_openmp_spin(options: InferenceOptions) -> None:
    """GOMP_SPINCOUNT for torch's libgomp where OpenVINO runs the networks, read when torch loads
    it; a deployment's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is."""
    if options.runtime != OPENVINO:
        return
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


def installed(needed: set[str]) -> bool:
    """Whether every module of `needed` can be imported here (without importing it): a
    serving-only install has OpenVINO and no framework."""
    return all(importlib.util.find_spec(module.split(".")[0]) is not None
               for framework in needed for module in _ORDER[framework])


def imported(needed: set[str]) -> bool:
    """Whether `require` has imported every framework of `needed` in this process."""
    return set(needed) <= _done


def gpu_possible() -> bool:
    """Whether this host has a GPU driver at all (else no framework sees a GPU)."""
    return any(os.path.exists(path) for path in _GPU_DRIVERS)


def version(package: str) -> str | None:
    """An installed distribution's version, read without importing it; None when it is absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def require(needed: set[str], options: InferenceOptions = InferenceOptions()) -> None:
    """Import `needed` (and set their thread pools from `options`), torch's stack first; a
    framework already imported is left as it is."""
    unknown = set(needed) - set(_ORDER)
    if unknown:
        raise ValueError(f"unknown frameworks: {sorted(unknown)}")
    with _lock:
        imported = False
        for framework in (TORCH, TENSORFLOW):  # torch stack first, always
            if framework in needed and framework not in _done:
                if framework == TORCH:
                    _short_openmp_spin(options)
                for module in _ORDER[framework]:
                    importlib.import_module(module)
                _configure(framework, options)
                _done.add(framework)
                imported = True
        if imported:
            gc.freeze()


def prepare(needed: set[str], options: InferenceOptions = InferenceOptions()) -> None:
    """`require`, for a model's load: a framework that cannot be imported (a missing system
    library, say) is logged with its traceback and raised as ModelUnavailable naming the module,
    never blaming the model's files."""
    try:
        require(needed, options)
    except Exception as exc:
        log.exception("importing the frameworks %s failed", sorted(needed))
        raise ModelUnavailable(import_failure(exc)) from None
