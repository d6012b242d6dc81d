"""OpenVINO executes the built-in networks on the CPU (or the device OPENVINO_DEVICE names,
runtimes.openvino_devices): converted in memory from the model the framework loaded (Keras for
the classifiers, torch for ImageAI's YOLO networks), compiled for that device, and the converted
model cached under MODELS_DIR/.openvino so the next start skips the conversion and the
framework's own model.

The framework stays the loader and the reference: a network is converted from the model the
framework loaded, and checked against the framework's own answer on a probe input before it
serves. A cache entry records that answer (a fixed sample of it), so a start from the cache
checks the compiled network against it without building the framework's model at all; an
entry that fails the check is converted again, and a conversion that fails it is not used (the
framework runs instead).

Measured on the 2-core development machine (docs/performance.md): a static batch-1 network
called once per image is faster here than a dynamic or a batch-8 network, so a batch of N is
N calls on one compiled network. OpenVINO's converter reports usage to Google Analytics
unless told otherwise; the service sends nothing anywhere, so that is blocked before
openvino is first imported.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from contract import OPENVINO, FrameworksNeeded, InferenceOptions
from runtimes import file_digests, openvino_devices

log = logging.getLogger(__name__)
T = TypeVar("T")

F32, BF16 = "f32", "bf16"
CACHE_FOLDER = ".openvino"
# Largest |difference| allowed between the compiled network (at f32) and the framework on the
# load-time probe: probabilities for classifiers, raw head outputs for detectors. Measured
# differences are 4e-6 to 8e-5 (float reordering); a broken conversion is off by far more.
TOLERANCE = 1e-3


class Unusable(Exception):
    """OpenVINO cannot run this model; the message is the reason, safe for logs and /models
    (no path, no exception text)."""


def load_module():
    """`openvino`, imported with its usage telemetry off. Raises Unusable when it cannot be
    imported (not installed, a missing system library)."""
    if "openvino" not in sys.modules:
        # The converter falls back to its own no-op telemetry when this import fails.
        sys.modules.setdefault("openvino_telemetry", None)
    try:
        import openvino

        _silence_telemetry()
    except ImportError as exc:
        raise Unusable(f"openvino could not be imported ({type(exc).__name__})") from None
    return openvino


def _silence_telemetry() -> None:
    """Where openvino was imported before `load_module` (with its telemetry), swap the
    converter's telemetry for the no-op stub it ships."""
    from openvino.tools.ovc import telemetry_stub

    for name in ("openvino.tools.ovc.convert_impl", "openvino.tools.ovc.telemetry_utils",
                 "openvino.tools.ovc.utils"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "tm", telemetry_stub) is not telemetry_stub:
            module.tm = telemetry_stub


def convert(framework_model, **options):
    """The framework model converted to an ov.Model that owns its weights. convert_model
    shares an in-memory model's weight buffers by default (share_weights=True): once the
    framework model is dropped, the compiled network would read freed memory."""
    return load_module().convert_model(framework_model, share_weights=False, **options)


def version() -> str:
    """The installed OpenVINO release (2026.4.1), without its build suffix."""
    return load_module().get_version().split("-")[0]


def probe_batch(height: int, width: int, count: int = 2, seed: int = 20261122) -> np.ndarray:
    """Deterministic RGB 0-255 float32 images with structure at every scale (blocks + noise),
    for the load-time check of a compiled network against its framework."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        blocks = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(blocks).resize((width, height), Image.BILINEAR), np.float32)
        images.append(np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255))
    return np.stack(images).astype(np.float32)


class CompiledNetwork:
    """A network compiled for an OpenVINO device (OPENVINO_DEVICE). Thread-safe: each call takes
    an idle infer request (an infer request serves one call at a time), creating one when none
    is idle. `precision` is the one in use where the device reports it; AUTO, MULTI and HETERO
    do not, and theirs is the one asked of their devices."""

    def __init__(self, compiled, asked: str = F32):
        self._compiled = compiled
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        try:
            self.precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except RuntimeError:
            self.precision = asked
        self.details: dict = {}   # what the model recorded besides the network (Source.details)

    @property
    def devices(self) -> str:
        """Where OpenVINO runs the network now (AUTO may move it once a device is ready)."""
        return openvino_devices.described(self._compiled.get_property("EXECUTION_DEVICES"))

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            result = request.infer(list(inputs))
            return [np.asarray(result[output]) for output in self._compiled.outputs]
        finally:
            self._idle.put(request)

    def per_image(self, batch: np.ndarray) -> list[np.ndarray]:
        """A batch run one image at a time on the batch-1 network, outputs concatenated."""
        if len(batch) == 1:
            return self(batch)
        parts = [self(batch[i:i + 1]) for i in range(len(batch))]
        return [np.concatenate(outs) for outs in zip(*parts)]


class FrameworkModel:
    """The framework's model, built at most once and only when something needs it: a start from
    the converted-model cache never does. A build that failed raises its exception again at
    every call (the weights' fault, reported as a framework start would report it)."""

    def __init__(self, build: Callable[[], T]):
        self._build, self._model = build, None
        self.failure: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            if self._model is None and self.failure is None:
                try:
                    self._model = self._build()
                except Exception as exc:
                    self.failure = exc
            if self.failure is not None:
                raise self.failure
            return self._model


@dataclasses.dataclass(frozen=True)
class Source:
    """What the framework gives when the cache cannot: the framework's answers on the probe
    (`expected`), `convert()` for the ov.Model, `details` the model needs besides the network
    (JSON: recorded in the cache entry, set on the compiled network before its check), and
    `verify(network)`, a further check run once after a conversion (raises Unusable)."""
    expected: list[np.ndarray]
    convert: Callable[[], object]
    details: dict = dataclasses.field(default_factory=dict)
    verify: Callable[["CompiledNetwork"], None] | None = None


@dataclasses.dataclass(frozen=True)
class Conversion:
    """One network and how it is known: `key` names it in the cache (model, weights digest,
    OpenVINO and source versions); `probe(network)` is a compiled network's answer on the fixed
    probe input; `source()` loads the framework's model (only on a cache miss) and returns the
    Source; `input_shapes` are what the network is compiled for (-1: any)."""
    key: str
    probe: Callable[["CompiledNetwork"], list[np.ndarray]]
    source: Callable[[], Source]
    input_shapes: list[list[int]]

    @property
    def model(self) -> str:
        return model_of(self.key)


def model_of(key: str) -> str:
    """The model a cache key names (built-in names hold no '-')."""
    return key.split("-")[0]


# At most this many values of each probe output are recorded in a cache entry (evenly spaced):
# a wrong conversion or damaged weights move nearly every value, and the entry stays small
# (YOLOv3's three head outputs hold 0.9 million).
RECORDED_VALUES = 4096


@dataclasses.dataclass(frozen=True)
class Expected:
    """A reference answer of one output: its shape, its scale (raw head outputs are unbounded:
    they are compared relative to their largest value, probabilities as they are), and values
    at `positions` of the flattened output (None: all of them)."""
    shape: tuple[int, ...]
    scale: float
    values: np.ndarray
    positions: np.ndarray | None = None

    @classmethod
    def of(cls, output: np.ndarray, limit: int | None = None) -> "Expected":
        output = np.asarray(output, np.float64)
        positions = None
        if limit is not None and output.size > limit:
            positions = np.linspace(0, output.size - 1, limit).round().astype(np.int64)
        flat = output.ravel()
        return cls(tuple(output.shape), max(1.0, float(np.abs(output).max(initial=0.0))),
                   flat if positions is None else flat[positions], positions)

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "scale": self.scale, "values": self.values.tolist(),
                "positions": None if self.positions is None else self.positions.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "Expected":
        positions = data["positions"]
        return cls(tuple(data["shape"]), float(data["scale"]), np.asarray(data["values"], np.float64),
                   None if positions is None else np.asarray(positions, np.int64))

    def check(self, model: str, got: np.ndarray) -> None:
        got = np.asarray(got)
        if tuple(got.shape) != self.shape:
            raise Unusable(f"OpenVINO's answer on the load check of '{model}' has shape "
                           f"{list(got.shape)}, the framework's {list(self.shape)}")
        flat = got.ravel()
        check_close(model, (flat if self.positions is None else flat[self.positions]) / self.scale,
                    self.values / self.scale)


# A key part a serving-only install cannot know: no weight file to hash, no framework installed.
ANY = "*"


def cache_key(model: str, weights: Path | None, source: str | None, code: tuple[str, ...] = (), *,
              models_dir: Path) -> str:
    """<model>-<weights sha256 prefix>-openvino<version>-<source>-code<digest>-cpu<fingerprint>:
    another weights file, OpenVINO release, framework version, conversion code or kind of CPU is
    another entry, never a stale one (compile_network adds the device: entry_key). `code`: the
    source files that shape the converted network and read its outputs (this module's is always
    included): a start from the cache checks against the answer recorded by the code that
    converted, so another version of that code must not find the entry. The weights' digest is
    remembered in `models_dir`'s cache folder (runtimes.file_digests). `weights` or `source`
    None (a serving-only install): that part is ANY, and the cache serves the newest matching
    conversion (ConvertedCache.resolve)."""
    digest = hashlib.sha256()
    for path in sorted({__file__, *code}):
        digest.update(Path(path).read_bytes())
    weights_part = ANY if weights is None else file_digests.memo(Path(models_dir) / CACHE_FOLDER).sha256(weights)[:16]
    return (f"{model}-{weights_part}-openvino{version()}-{source or ANY}-code{digest.hexdigest()[:8]}"
            f"-cpu{cpu_fingerprint()}")


# The instruction sets OpenVINO's CPU plugin chooses its kernels by.
_KERNEL_ISA = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
               "amx_tile", "amx_bf16", "amx_int8")


@functools.cache
def cpu_fingerprint() -> str:
    """8 hex digits naming this CPU as OpenVINO's kernels see it (its name, capabilities and the
    instruction sets it picks kernels by). Part of the cache key: a start from the cache checks
    the compiled network on a small probe only, and the conversion's check at serving size ran
    on the CPU that converted; replicas on another kind of CPU sharing MODELS_DIR convert (and
    check) for themselves."""
    ov_core = core()
    described = [str(ov_core.get_property("CPU", "FULL_DEVICE_NAME")),
                 " ".join(sorted(ov_core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        described.append(" ".join(flag for flag in _KERNEL_ISA if flag in flags))
    except OSError:
        pass
    return hashlib.sha256("|".join(described).encode()).hexdigest()[:8]


def entry_key(key: str, device: str) -> str:
    """The cache entry of a conversion `key` compiled for `device` (OPENVINO_DEVICE): as for
    another kind of CPU (cpu_fingerprint), the conversion's check at serving size ran on the
    device that converted, and a start from the cache checks a small probe only; replicas on
    another device sharing MODELS_DIR convert (and check) for themselves."""
    return f"{key}-on{openvino_devices.cache_tag(device)}"


def compile_network(conversion: Conversion, models_dir: Path,
                    options: InferenceOptions = InferenceOptions()) -> CompiledNetwork:
    """The checked network compiled for options.device (its `details` set): from the cache when
    a valid entry exists and answers as it recorded, else converted now from the framework's
    model (and cached where MODELS_DIR is writable). Raises Unusable, or the framework's own
    exception where it cannot load the model."""
    ov = load_module()
    cache = ConvertedCache(Path(models_dir))
    exact = entry_key(conversion.key, options.device)
    key = cache.resolve(exact)
    entry = cache.read(key) if key else None
    if entry is not None:
        model, expected, details = entry
        try:
            network = _checked(ov, model, conversion, expected, details, options)
            cache.mark_used(key)
            return network
        except Exception as exc:
            log.warning("cached OpenVINO model %s failed its check (%s); converting again", key, _reason(exc))
            if key == exact:   # a serving-only install's pick stays for the replicas it suits
                cache.remove(key)
    key = exact
    source = conversion.source()   # FrameworksNeeded where they are not imported
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converters' tracing chatter
            converted = source.convert()
    except Exception as exc:
        log.debug("conversion of %s failed", conversion.key, exc_info=True)
        raise Unusable(f"the conversion to OpenVINO failed ({type(exc).__name__})") from None
    try:
        network = _checked(ov, converted, conversion, [Expected.of(o) for o in source.expected],
                           source.details, options)
        if source.verify is not None:
            source.verify(network)
    except Unusable:
        raise
    except Exception as exc:
        raise Unusable(f"OpenVINO could not compile the converted model ({type(exc).__name__})") from None
    # Only a conversion that passed the check is cached, with a sample of the answer it matched.
    if cache.write(key, converted, [Expected.of(o, RECORDED_VALUES) for o in source.expected], source.details):
        cache.mark_used(key)
    return network


def with_runtime_details(info: dict, runtime: str | None, precision: str | None, reason: str | None) -> dict:
    """A built-in model's /models description plus how it runs: OpenVINO's precision in use, and
    why it runs on its framework instead where OpenVINO was wanted and could not run it."""
    if runtime == OPENVINO:
        info["precision"] = precision
    if reason:
        info["runtime_reason"] = reason
    return info


def attempt(model: str, framework: str, make: Callable[[], T],
            loader: FrameworkModel | None = None) -> tuple[T | None, str | None]:
    """(what `make` returns, None), or (None, the reason) after one warning line saying that
    `framework` runs the model instead. Nothing here is a load failure: a failure is
    OpenVINO's, never the weights'. Where the framework itself could not load the model
    (`loader` failed), its own exception is raised, as a framework start would raise it."""
    try:
        return make(), None
    except FrameworksNeeded:
        raise
    except Exception as exc:
        if loader is not None and exc is loader.failure:
            raise
        if isinstance(exc, Unusable):
            reason = str(exc)
        else:
            log.debug("OpenVINO could not run model '%s'", model, exc_info=True)
            reason = f"OpenVINO could not run the model ({type(exc).__name__})"
    log.warning("model '%s' runs on %s instead of OpenVINO: %s", model, framework, reason)
    return None, reason


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, Unusable) else type(exc).__name__


def _checked(ov, model, conversion: Conversion, expected: list[Expected], details: dict,
             options: InferenceOptions) -> CompiledNetwork:
    """Compiled at full precision and checked against the framework's answers; then, for bf16,
    compiled again at that precision (bf16 moves answers by design: the check is of the
    conversion, at f32)."""
    network = _compile(ov, model, conversion, F32, options)
    network.details = details
    answers = conversion.probe(network)
    if len(answers) != len(expected):
        raise Unusable(f"OpenVINO's network for '{conversion.model}' has {len(answers)} outputs, "
                       f"the framework's {len(expected)}")
    for got, wanted in zip(answers, expected):
        wanted.check(conversion.model, got)
    if options.precision != F32:
        network = _compile(ov, model, conversion, options.precision, options)
        network.details = details
    return network


def _compile(ov, model, conversion: Conversion, precision: str, options: InferenceOptions) -> CompiledNetwork:
    model = model.clone()
    model.reshape({i: ov.PartialShape(shape) for i, shape in enumerate(conversion.input_shapes)})
    config = openvino_devices.compile_config(options.device, precision, options.threads)
    return CompiledNetwork(_core(ov).compile_model(model, options.device, config), asked=precision)


def core():
    """The process' one OpenVINO Core (its device plugins load once)."""
    return _core(load_module())


def device_problem(device: str) -> str | None:
    """Why OPENVINO_DEVICE=`device` cannot run here, naming the devices OpenVINO sees on this
    host; None when it can. The default CPU is taken as it is, without importing openvino (a
    start stays quick, and a host where openvino cannot load runs the frameworks, as before);
    any other device asks OpenVINO which devices this host has."""
    problem = openvino_devices.syntax_problem(device)
    if problem or device == openvino_devices.CPU:
        return problem
    try:
        ov_core = core()
        available = list(ov_core.available_devices)
    except Unusable as exc:
        return f"{exc}, so no OpenVINO device can be used; unset it to run the frameworks"
    return openvino_devices.availability_problem(device, available, {d: _full_name(ov_core, d) for d in available})


def _full_name(ov_core, device: str) -> str:
    try:
        return str(ov_core.get_property(device, "FULL_DEVICE_NAME"))
    except RuntimeError:
        return ""


_core_lock = threading.Lock()
_cores: list = []


def _core(ov):
    with _core_lock:
        if not _cores:
            _cores.append(ov.Core())
        return _cores[0]


def check_close(name: str, got: np.ndarray, expected: np.ndarray, tolerance: float = TOLERANCE) -> None:
    """Raise Unusable unless the compiled network's answer is within the tolerance."""
    difference = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(expected, np.float64))))
    if not np.isfinite(difference) or difference > tolerance:
        raise Unusable(f"OpenVINO's answer differs from the framework's by {difference:.2g} on "
                       f"the load check of '{name}' (at most {tolerance:g} allowed)")


class ConvertedCache:
    """MODELS_DIR/.openvino/<key>.xml, .bin and .json: the converted model (OpenVINO IR, full
    precision weights) and its manifest (sizes and sha256 of both files, the framework's answer
    on the probe that the conversion matched and the model's details, with their sha256),
    written last. Each file is
    written under a temporary name and renamed into place, so a reader sees whole files; an
    entry whose manifest is missing or does not match its files is never read.

    Every release, weights file or OpenVINO version makes new entries (YOLOv3's is 248 MB).
    Writing an entry removes the same model's other entries unused for UNUSED_DAYS, and staging
    files a killed write left. An entry is used (its manifest's modification time) when a start
    serves from it, and again every MARK_EVERY_S while the process serves it, so a replica of an
    older release sharing MODELS_DIR keeps its entry for as long as it runs. A replica that
    cannot write MODELS_DIR (a read-only mount) cannot mark: where another replica writes the
    same folder, such a replica's entry goes after a week unused, and its next start converts
    in memory."""

    _warned: set[Path] = set()
    UNUSED_DAYS = 7
    MARK_EVERY_S = 6 * 3600

    def __init__(self, models_dir: Path):
        self.folder = Path(models_dir) / CACHE_FOLDER

    def resolve(self, key: str) -> str | None:
        """The entry to read for `key`: itself; or, where a part is ANY (a serving-only install),
        the most recently used entry matching it, this CPU's first. Another kind of CPU's entry
        was checked at serving size where it was converted, and here on the small probe only
        (one warning line); None when nothing matches."""
        if ANY not in key:
            return key
        for pattern, same_cpu in ((key, True), (re.sub(r"-cpu[0-9a-f]{8}", "-cpu" + ANY, key), False)):
            found = sorted(self.folder.glob(pattern + ".json"), key=_modified, reverse=True)
            if found:
                chosen = found[0].name.removesuffix(".json")
                if not same_cpu:
                    log.warning("OpenVINO model %s was converted on another kind of CPU: serving it, checked "
                                "on the load probe only", chosen)
                return chosen
        return None

    def paths(self, key: str) -> dict[str, Path]:
        return {suffix: self.folder / f"{key}.{suffix}" for suffix in ("xml", "bin", "json")}

    def read(self, key: str) -> tuple[object, list[Expected], dict] | None:
        """(the cached ov.Model, the recorded answers, the details), or None when the entry is
        missing, partial or corrupt, or records no answers (written by an older release)."""
        paths = self.paths(key)
        if not paths["json"].is_file():
            return None
        try:
            manifest = json.loads(paths["json"].read_text("utf-8"))
            for suffix in ("xml", "bin"):
                if self._describe(paths[suffix]) != manifest[suffix]:
                    raise ValueError(f"the .{suffix} file does not match the manifest")
            if "expected" not in manifest:
                raise ValueError("it records no reference answers")
            if _answers_sha256(manifest["expected"], manifest["details"]) != manifest["answers_sha256"]:
                raise ValueError("its recorded answers do not match their checksum")
            expected = [Expected.from_json(item) for item in manifest["expected"]]
            details = dict(manifest["details"])
            model = _core(load_module()).read_model(str(paths["xml"]), str(paths["bin"]))
        except Exception as exc:
            log.warning("cached OpenVINO model %s is unusable (%s); converting again",
                        key, exc if isinstance(exc, ValueError) else type(exc).__name__)
            return None
        log.info("OpenVINO model %s read from the cache", key)
        return model, expected, details

    def mark_used(self, key: str) -> None:
        """The entry serves this process: used now, and again every MARK_EVERY_S."""
        manifest = self.paths(key)["json"]
        with _serving_lock:
            if not _serving:
                threading.Thread(target=_keep_marking, args=(self.MARK_EVERY_S,), name="openvino-cache-marks",
                                 daemon=True).start()
            _serving.add(manifest)
        _touch(manifest)

    def write(self, key: str, model, expected: list[Expected], details: dict) -> bool:
        """Save the entry; False (and one log line per folder) when MODELS_DIR is read-only."""
        ov = load_module()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.folder))
        except OSError as exc:
            self._cannot_write(exc)
            return False
        try:
            ov.save_model(model, str(staging / "model.xml"), compress_to_fp16=False)
            manifest = {s: self._describe(staging / f"model.{s}") for s in ("xml", "bin")}
            recorded = [item.to_json() for item in expected]
            manifest.update(expected=recorded, details=details, answers_sha256=_answers_sha256(recorded, details))
            (staging / "model.json").write_text(json.dumps(manifest), "utf-8")
            paths = self.paths(key)
            paths["json"].unlink(missing_ok=True)  # the entry is invalid until it is complete
            for suffix in ("bin", "xml", "json"):
                os.replace(staging / f"model.{suffix}", paths[suffix])
        except OSError as exc:
            self._cannot_write(exc)
            return False
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("OpenVINO model %s saved to MODELS_DIR/%s", key, CACHE_FOLDER)
        self._remove_unused(key)
        return True

    def _remove_unused(self, key: str) -> None:
        """Remove the entries of `key`'s model other than `key` that were not used (served from
        or written) for UNUSED_DAYS, and staging files (a killed write's) older than a day."""
        now = time.time()
        last_used: dict[str, float] = {}
        for path in self.folder.glob(f"{model_of(key)}-*"):
            other = path.name.rsplit(".", 1)[0]
            if other != key and path.suffix in (".xml", ".bin", ".json"):
                last_used[other] = max(last_used.get(other, 0.0), _modified(path))
        for other, used in last_used.items():
            if now - used > self.UNUSED_DAYS * 86400:
                self.remove(other)
                log.info("OpenVINO model %s removed from the cache (unused for %d days)", other, self.UNUSED_DAYS)
        for staging in [*self.folder.glob(".tmp-*"), *self.folder.glob(file_digests.STAGING_PREFIX + "*")]:
            if now - _modified(staging) > 86400:
                if staging.is_dir():
                    shutil.rmtree(staging, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        staging.unlink()

    def _describe(self, path: Path) -> dict:
        return {"size": path.stat().st_size, "sha256": file_digests.memo(self.folder).sha256(path)}

    def remove(self, key: str) -> None:
        for path in self.paths(key).values():
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    def _cannot_write(self, exc: OSError) -> None:
        if self.folder not in self._warned:
            self._warned.add(self.folder)
            log.warning("MODELS_DIR/%s cannot be written (%s): converted models are not cached, "
                        "each start converts them again", CACHE_FOLDER, type(exc).__name__)


_serving: set[Path] = set()   # manifests of the entries this process serves from
_serving_lock = threading.Lock()


def _keep_marking(every_s: float) -> None:
    while True:
        time.sleep(every_s)
        mark_serving()


def mark_serving() -> None:
    """Mark every entry this process serves from as used now."""
    with _serving_lock:
        manifests = list(_serving)
    for manifest in manifests:
        _touch(manifest)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:   # a read-only MODELS_DIR, or the entry was converted again meanwhile
        pass


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _answers_sha256(expected: list, details: dict) -> str:
    return hashlib.sha256(json.dumps([expected, details], sort_keys=True).encode("utf-8")).hexdigest()

