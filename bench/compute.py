"""How close each network runs to what this machine's CPUs can compute, measured in the same run.

- The machine's rate: OpenVINO's own 3x3 convolutions of ResNet's and YOLO's layer shapes, at
  the thread count the run's in-process timings use (the service's: INTRA_OP_THREADS, or the
  CPUs divided among WORKERS), in GFLOP/s, at float32 and, where the CPU has bfloat16
  arithmetic (OpenVINO's BF16 capability), bfloat16. Each layer's fastest of `repeat` calls,
  the best layer: the rate a network made of such layers can reach (a whole network's 1x1
  convolutions can do a little better). The network timings it is compared with are medians,
  so a network's share of the rate is, if anything, understated.
- A network's arithmetic: GFLOP per image (2 x the multiply-adds of every convolution and
  matrix product) counted on its converted OpenVINO graph, the cache entry the run's load
  served from, at the input shape the benchmark timed.

So `network_gflop / rate` is the fastest that network can run here at that precision, and a
target that asks for less time than that cannot be met by any float32 kernel on this machine.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# (channels, side): ResNet50's 3x3 stages at 224 and YOLO's mid-network layers at 416.
CONV_LAYERS = ((128, 56), (256, 28), (512, 14))


def conv_rate(threads: int, repeat: int = 15) -> dict[str, float | None]:
    """GFLOP/s of the best of CONV_LAYERS (each its fastest of `repeat` calls), per precision;
    None for bf16 where the CPU has no bfloat16 arithmetic (OpenVINO's CPU plugin would accept
    the hint on any AVX-512 CPU and emulate it, which is no rate to compare with)."""
    import openvino as ov
    import openvino.opset13 as ops

    from runtimes import openvino as runtime

    core = runtime.core()
    rng = np.random.default_rng(0)
    rates: dict[str, float | None] = {"f32": None, "bf16": None}
    native = {"f32"} | ({"bf16"} if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else set())
    for precision in ("f32", "bf16"):
        if precision not in native:
            continue
        best = None
        for channels, side in CONV_LAYERS:
            inputs = ops.parameter([1, channels, side, side], np.float32)
            weights = ops.constant(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.01)
            model = ov.Model([ops.convolution(inputs, weights, [1, 1], [1, 1], [1, 1], [1, 1])], [inputs])
            compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                         "INFERENCE_PRECISION_HINT": precision})
            fastest = _fastest(compiled.create_infer_request(),
                               rng.random((1, channels, side, side), dtype=np.float32), repeat)
            rate = 2 * channels * channels * 9 * side * side / fastest / 1e9
            best = rate if best is None else max(best, rate)
        rates[precision] = best
    return rates


def _fastest(request, x: np.ndarray, repeat: int) -> float:
    """Seconds of the fastest of `repeat` calls, after three to warm up."""
    for _ in range(3):
        request.infer([x])
    fastest = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        request.infer([x])
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def network_gflop(xml: Path, input_shape: tuple[int, ...]) -> float:
    """GFLOP of one call of the IR at `input_shape` (its first input): 2 x multiply-adds of its
    convolutions (grouped and depthwise ones per group) and matrix products."""
    import openvino as ov

    from runtimes import openvino as runtime

    model = runtime.core().read_model(str(xml))
    model.reshape({0: ov.PartialShape(list(input_shape))})
    total = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Convolution":       # weights [out, in, kh, kw]
            total += 2 * int(np.prod(op.get_output_shape(0))) * int(np.prod(list(op.get_input_shape(1))[1:]))
        elif kind == "GroupConvolution":   # weights [groups, out/g, in/g, kh, kw]
            total += 2 * int(np.prod(op.get_output_shape(0))) * int(np.prod(list(op.get_input_shape(1))[2:]))
        elif kind == "MatMul":
            left = list(op.get_input_shape(0))
            inner = left[-2] if op.get_transpose_a() and len(left) > 1 else left[-1]   # 1-D: no transpose
            total += 2 * int(np.prod(op.get_output_shape(0))) * int(inner)
    return total / 1e9


def served_entry(models_dir: Path, name: str) -> Path | None:
    """The IR of `name`'s converted-model cache entry that a load used last: a start marks the
    entry it serves from or writes (its manifest's modification time). None without one. Where
    this run did not load the model on OpenVINO, that is the entry another run or replica used
    last: the same architecture, so the same count."""
    manifests = [path for path in (models_dir / ".openvino").glob(f"{name}-*.json")
                 if path.with_suffix(".xml").is_file()]
    if not manifests:
        return None
    return max(manifests, key=lambda path: path.stat().st_mtime_ns).with_suffix(".xml")


def floor_ms(gflop: float | None, rate: float | None) -> float | None:
    """The least time `gflop` takes at `rate` GFLOP/s, in ms."""
    return None if not gflop or not rate else gflop / rate * 1e3
