"""bench/compute.py: a network's arithmetic counted on its IR, the cache entry a load used, the
machine's measured convolution rate, and the limits the comparison derives from them."""
from __future__ import annotations

import os

import numpy as np
import pytest

from bench.compare import compare_model, markdown
from bench.compute import conv_rate, floor_ms, network_gflop, served_entry


def test_network_gflop_counts_convolutions_grouped_convolutions_and_matrix_products(tmp_path):
    """A 3x3 convolution 3 -> 8 channels on 16x16 (stride 1, padded), a depthwise 3x3 over its 8
    channels, and a matrix product of the flattened result by a 2048 x 10 matrix, counted at
    batch 2: the reshape to the timed shape applies."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    inputs = ops.parameter([-1, 3, 16, 16], np.float32)
    conv = ops.convolution(inputs, ops.constant(rng.random((8, 3, 3, 3), dtype=np.float32)),
                           [1, 1], [1, 1], [1, 1], [1, 1])
    depthwise = ops.group_convolution(conv, ops.constant(rng.random((8, 1, 1, 3, 3), dtype=np.float32)),
                                      [1, 1], [1, 1], [1, 1], [1, 1])
    flat = ops.reshape(depthwise, ops.constant(np.array([-1, 8 * 16 * 16], np.int64)), False)
    product = ops.matmul(flat, ops.constant(rng.random((2048, 10), dtype=np.float32)), False, False)
    xml = tmp_path / "net.xml"
    ov.save_model(ov.Model([product], [inputs]), str(xml))

    expected = 2 * (2 * 8 * 16 * 16 * (3 * 3 * 3)      # conv: outputs x (in x kh x kw)
                    + 2 * 8 * 16 * 16 * (1 * 3 * 3)    # depthwise: outputs x (in/group x kh x kw)
                    + 2 * 10 * 2048)                   # matmul: outputs x inner
    assert network_gflop(xml, (2, 3, 16, 16)) == pytest.approx(expected / 1e9)


def test_served_entry_is_the_model_s_most_recently_marked_manifest(tmp_path):
    assert served_entry(tmp_path, "yolo") is None       # no cache folder at all
    cache = tmp_path / ".openvino"
    cache.mkdir()
    for stem, when in (("yolo-old", 1_000), ("yolo-new", 2_000), ("tiny_yolo-newest", 3_000)):
        (cache / f"{stem}.xml").write_text("<net/>")
        (cache / f"{stem}.json").write_text("{}")
        os.utime(cache / f"{stem}.json", ns=(when * 10**9, when * 10**9))
    (cache / "yolo-unfinished.json").write_text("{}")   # a manifest without its IR is no entry
    os.utime(cache / "yolo-unfinished.json", ns=(4_000 * 10**9, 4_000 * 10**9))
    (cache / "digests.json").write_text("{}")

    assert served_entry(tmp_path, "yolo") == cache / "yolo-new.xml"   # not tiny_yolo's
    assert served_entry(tmp_path, "tiny_yolo") == cache / "tiny_yolo-newest.xml"
    assert served_entry(tmp_path, "resnet") is None


def test_the_comparison_states_the_best_ratio_the_measured_rate_allows():
    """ResNet-like: 7.7 GFLOP at 220 GFLOP/s is 35 ms at best, 0.64 of a 55 ms framework raw cost,
    above a 0.6 target whatever the runtime; YOLO-like: 5.5 GFLOP against a 36.5 ms torch
    forward allows 1.46x at f32 and 2.92x at bf16 (twice the rate)."""
    rates = {"f32": 220.0, "bf16": 440.0}

    def entry(raw: dict, p50: float, gflop: float) -> dict:
        return {"raw": {"640x480": raw}, "network": {"gflop": gflop},
                "service": {"ready_seconds": 3.0, "images": {"640x480": [
                    {"concurrency": 1, "p50_ms": p50, "throughput_rps": 1e3 / p50}]}}}

    resnet = compare_model("resnet", entry({"raw_ms": 55.0}, 40.0, 7.7), entry({"raw_ms": 36.0}, 38.0, 7.7), rates)
    target = resnet["service_p50_vs_framework_raw"]
    assert target["ratio"] == pytest.approx(38 / 55) and target["met"] is False
    assert target["network_alone_at_f32_rate"] == pytest.approx(7.7 / 220 * 1e3 / 55)

    tiny = compare_model("tiny_yolo", entry({"raw_ms": 45.0, "forward_ms": 36.5}, 50.0, 5.5),
                         entry({"raw_ms": 30.0, "forward_ms": 25.0}, 42.0, 5.5), rates)
    forward = tiny["forward_speedup"]
    assert forward["ratio"] == pytest.approx(36.5 / 25.0) and forward["met"] is False
    assert forward["at_f32_rate"] == pytest.approx(36.5 / (5.5 / 220 * 1e3))
    assert forward["at_bf16_rate"] == pytest.approx(2 * forward["at_f32_rate"])

    table = "\n".join(markdown({"resnet": resnet, "tiny_yolo": tiny}))
    assert "network alone at the f32 rate: 0.64" in table and "at the measured rate: f32 1.46, bf16 2.92" in table

    # Without a measured rate (older reports) the comparison is as before, no limits claimed.
    plain = compare_model("tiny_yolo", entry({"raw_ms": 45.0, "forward_ms": 36.5}, 50.0, 5.5),
                          entry({"raw_ms": 30.0, "forward_ms": 25.0}, 42.0, 5.5))
    assert set(plain["forward_speedup"]) == {"ratio", "target", "met"}
    assert floor_ms(None, 220.0) is None and floor_ms(5.5, None) is None


def test_conv_rate_measures_float32_and_bf16_only_where_the_cpu_has_bf16_arithmetic():
    rates = conv_rate(threads=1, repeat=1)
    assert set(rates) == {"f32", "bf16"}
    assert rates["f32"] > 1.0          # GFLOP/s: any CPU this runs on does more than one
    from runtimes import openvino

    if "BF16" in openvino.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):   # native bf16
        assert rates["bf16"] > 1.0
    else:
        assert rates["bf16"] is None


def test_the_benchmark_times_in_process_at_the_service_s_thread_count(monkeypatch):
    """INTRA_OP_THREADS when set, else the CPUs divided among WORKERS (as the supervisor divides
    them), so the raw costs and the rate are measured at what each serving process runs with."""
    from bench.__main__ import service_options

    monkeypatch.setenv("INTRA_OP_THREADS", "3")
    monkeypatch.setenv("INTER_OP_THREADS", "2")
    options = service_options("framework")
    assert (options.threads, options.inter_op_threads, options.runtime) == (3, 2, "framework")
    monkeypatch.delenv("INTRA_OP_THREADS")
    monkeypatch.delenv("INTER_OP_THREADS")
    monkeypatch.setenv("WORKERS", "2")
    assert service_options().threads == max(1, len(os.sched_getaffinity(0)) // 2)
