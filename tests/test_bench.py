"""The benchmarks in their seconds-long smoke modes (the real runs are by hand: docs/performance.md).
Those marked `bench` run only when asked (`pytest -m bench`, docs/testing.md): each starts the
service or the frameworks several times over, and together they took three minutes of CI's run.
The cold-start benchmark, lean serving's measure, and the report's unit tests run every time."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT


@pytest.mark.slow
@pytest.mark.bench
def test_benchmark_smoke(random_models_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--models", "mobilenet",
                             "--models-dir", str(random_models_dir), "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"mobilenet.tensorflow", "mobilenet.openvino"}
    for key, entry in report["models"].items():
        assert entry["raw"]["640x480"]["raw_ms"] > 0
        systems = ("service", "naive") if key.endswith("tensorflow") else ("service",)
        for system in systems:
            levels = entry[system]["images"]["640x480"]
            assert [level["concurrency"] for level in levels] == [1, 2]
            assert all(level["ok"] > 0 and level["p50_ms"] > 0 for level in levels)
            assert entry[system]["ready_seconds"] > 0 and entry[system]["peak_rss_mb"] > 0
    assert report["models"]["mobilenet.openvino"]["cold_start_no_cache_seconds"] > 0
    comparison = report["comparison"]["mobilenet"]
    assert comparison["service_p50_vs_framework_raw"]["ratio"] > 0
    assert set(comparison["cold_start_seconds"]) >= {"framework", "openvino_cache_warm", "openvino_no_cache"}
    assert len(report["load_average_at_start"]) == 3
    assert report["device"] == "cpu" and {e["device"] for e in report["models"].values()} == {"cpu"}  # named
    assert "service on openvino:" in result.stdout and "naive:" in result.stdout
    assert "OpenVINO vs TensorFlow/torch" in result.stdout
    # How close the network runs to the machine: MobileNetV2 at 224 is 300 M multiply-adds.
    assert report["compute"]["conv_gflops_per_s"]["f32"] > 0
    for entry in report["models"].values():
        assert 0.55 < entry["network"]["gflop"] < 0.65 and entry["network"]["input_shape"] == [1, 224, 224, 3]
        assert entry["raw"]["640x480"]["network_gflops_per_s"] > 0
    assert 0 < comparison["service_p50_vs_framework_raw"]["network_alone_at_f32_rate"]
    assert "measured convolution rate, f32" in result.stdout


@pytest.mark.slow
@pytest.mark.bench
def test_deepstack_benchmark_smoke(tmp_path):
    """`python -m bench.deepstack` writes calibrated random TinyYOLOv3 weights and reports
    latencies of frames sent as Frigate sends them."""
    out = tmp_path / "deepstack.json"
    result = subprocess.run([sys.executable, "-m", "bench.deepstack", "--models-dir", str(tmp_path / "models"),
                             "--random-weights", "--requests", "5", "--warmup", "1", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["model"] == "tiny_yolo" and "calibrated" in report["weights"]
    assert report["statuses"] == {"200": 5}
    assert 0 < report["inference_p50_ms"] <= report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["frames_over_frigate_max_predictions"] == 0



@pytest.mark.slow
@pytest.mark.bench
def test_openmp_benchmark_times_each_setting_in_a_process_of_its_own(random_models_dir, tmp_path):
    """`python -m bench.openmp`: libgomp's default, the service's and PASSIVE, each in a fresh
    process (libgomp reads them when torch loads it); predict() and YOLO's forward step."""
    out = tmp_path / "openmp.json"
    result = subprocess.run([sys.executable, "-m", "bench.openmp", "--models", "tiny_yolo", "--runtimes", "openvino",
                             "--repeat", "2", "--models-dir", str(random_models_dir), "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())["models"]["tiny_yolo.openvino"]
    assert set(runs) == {"libgomp default", "service default", "PASSIVE"}
    assert all(run["predict_ms"] > 0 and run["forward_ms"] > 0 for run in runs.values())
    assert "tiny_yolo.openvino: libgomp default: predict_ms" in result.stdout


@pytest.mark.slow
@pytest.mark.bench
def test_precision_benchmark_compares_bf16_with_f32(random_models_dir, tmp_path):
    """`python -m bench.precision` loads the classifier on OpenVINO at both precisions and
    reports agreement on the sample photos and the compiled call's time."""
    out = tmp_path / "precision.json"
    result = subprocess.run([sys.executable, "-m", "bench.precision", "--models", "mobilenet",
                             "--models-dir", str(random_models_dir), "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    entry = json.loads(out.read_text())["models"]["mobilenet"]
    assert entry["photos"] >= 10 and 0 <= entry["same_top1"] <= entry["photos"]
    assert 0 <= entry["top5_overlap_mean"] <= 1 and entry["f32_call_ms"] > 0 and entry["bf16_call_ms"] > 0
    assert entry["precision_in_use"]["f32"] == "f32"

@pytest.mark.slow
@pytest.mark.bench
def test_detector_raw_cost_feeds_the_network_on_its_own_device(random_models_dir):
    """The step that crashed on CUDA (a CPU tensor into a GPU network): on torch the tensor goes to
    the network's device (the model's own forward) and timings wait for it. No GPU here: the CPU
    path, and the device named."""
    from bench.__main__ import bench_images, raw_cost, timed

    raw, device = raw_cost("tiny_yolo", random_models_dir, {"640x480": bench_images()["640x480"]}, 2,
                           "tensorflow")
    assert device == "cpu"
    entry = raw["640x480"]
    assert entry["forward_ms"] > 0 and entry["detect_ms"] > 0 and entry["preprocess_ms"] > 0
    assert entry["forward_batch8_ms"] > 0 and entry["detect_batch8_ms"] > 0   # a micro-batch's cost
    synced = []
    timed(lambda: None, 3, sync=lambda: synced.append(1))
    assert len(synced) == 4  # after the warm-up call and after each timed call


def test_report_draws_one_chart_per_model_and_image(tmp_path):
    from PIL import Image

    from bench.report import main

    def levels(scale):
        return [{"concurrency": c, "throughput_rps": scale * c, "p50_ms": 10.0 * c, "p95_ms": 12.0 * c,
                 "p99_ms": 15.0 * c, "statuses": {"200": 10}, "ok": 10} for c in (1, 4, 8)]
    system = {"images": {"640x480": levels(10.0), "12MP": levels(2.0)}, "ready_seconds": 1.0, "peak_rss_mb": 100}
    report = {"machine": "x86_64, 2 CPUs", "device": "cpu", "models": {
        "mobilenet": {"raw": {"640x480": {"raw_ms": 5.0}}, "service": system, "naive": system}}}
    result = tmp_path / "bench.json"
    result.write_text(json.dumps(report))
    assert main([str(result), "--charts", str(tmp_path / "charts")]) == 0
    charts = sorted(p.name for p in (tmp_path / "charts").glob("*.png"))
    assert charts == ["mobilenet-12MP-cpu.png", "mobilenet-640x480-cpu.png"]
    with Image.open(tmp_path / "charts" / charts[0]) as chart:
        assert chart.size == (900, 360)


def test_report_draws_several_runs_as_one_chart_labelled_by_their_settings(tmp_path):
    from PIL import Image

    from bench.charts import differing_settings, draw_runs

    def report(workers, scale):
        levels = [{"concurrency": c, "throughput_rps": scale * c, "p50_ms": 10.0, "p95_ms": 12.0 * c,
                   "p99_ms": 15.0, "statuses": {"200": 10}, "ok": 10} for c in (1, 8, 16)]
        return {"machine": "x86_64, 16 CPUs", "device": "cuda: NVIDIA H200",
                "settings": {"WORKERS": workers, "MAX_QUEUE": "16"},
                "models": {"tiny_yolo.tensorflow": {"service": {"images": {"640x480": levels}}}}}
    runs = [report("1", 10.0), report("4", 20.0)]
    assert differing_settings(runs) == ["WORKERS"]
    paths = draw_runs(runs, tmp_path)
    # MAX_QUEUE is the same in both runs: only WORKERS labels the lines and names the file.
    assert [p.name for p in paths] == ["tiny_yolo.tensorflow-640x480-cuda-by-WORKERS.png"]
    with Image.open(paths[0]) as chart:
        assert chart.size == (900, 360)


@pytest.mark.slow
@pytest.mark.bench
def test_detector_batches_benchmark_checks_a_batch_against_each_image_alone(tmp_path):
    """`python -m bench.detector_batches` (run on the GPU machine for docs/performance.md), here
    on the CPU with calibrated TinyYOLOv3 weights: a batch of 8 answers as each image alone."""
    out = tmp_path / "batches.json"
    result = subprocess.run([sys.executable, "-m", "bench.detector_batches", "--models", "tiny_yolo",
                             "--models-dir", str(tmp_path / "models"), "--random-weights", "--repeat", "2",
                             "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    entry = report["models"]["tiny_yolo"]
    assert report["device"] == "cpu" and entry["device"] == "cpu" and entry["batchable"] is True
    assert entry["batch_equals_alone"] is True
    assert 1 <= min(entry["detections_per_image"]) and max(entry["detections_per_image"]) <= 100   # realistic
    assert entry["forward_batch8_ms"] > entry["forward_batch1_ms"] > 0 and entry["predict_batch8_ms"] > 0


@pytest.mark.slow
def test_cold_start_benchmark_times_each_variant_to_ready_and_to_a_first_answer(random_models_dir, tmp_path):
    """`python -m bench.cold_start`: the framework, OpenVINO from a warm cache (the full install
    and the serving-only one) and OpenVINO converting, each started and timed to /ready and to
    its first answer, then measured after 100 requests, with the frameworks mapped."""
    variants = ["framework", "openvino", "convert"] + (["serving"] if (ROOT / ".venv-serving").exists() else [])
    out = tmp_path / "cold.json"
    result = subprocess.run([sys.executable, "-m", "bench.cold_start", "--models", "mobilenet", "--rounds", "1",
                             "--variants", ",".join(variants), "--models-dir", str(random_models_dir),
                             "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    entry = json.loads(out.read_text())["models"]["mobilenet"]
    assert set(entry) == set(variants)
    for name, variant in entry.items():
        assert len(variant["runs"]) == 1 and variant["median_rss_mb_after_requests"] > 50
        assert 0 < variant["median_ready_s"] <= variant["median_first_answer_s"]
        assert variant["runs"][0]["runtimes"] == {"mobilenet": "tensorflow" if name == "framework" else "openvino"}
        assert bool(variant["frameworks_mapped"]) == (name in ("framework", "convert")), (name, variant)
    assert "| mobilenet | framework |" in result.stdout


@pytest.mark.slow
@pytest.mark.bench
def test_profile_benchmark_sums_the_loaded_service_s_samples(random_models_dir, tmp_path):
    """`python -m bench.profile` starts the service under py-spy, loads it, and sums the samples
    (the interpreter lock's holder, then every active thread) by what the service was doing."""
    out = tmp_path / "profile.json"
    result = subprocess.run([sys.executable, "-m", "bench.profile", "--model", "mobilenet", "--clients", "4",
                             "--seconds", "3", "--models-dir", str(random_models_dir), "--out", str(tmp_path / "raw"),
                             "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for mode in ("gil", "active"):
        entry = report["modes"][mode]
        assert entry["load"]["statuses"] == {"200": entry["load"]["ok"]} and entry["load"]["ok"] > 0
        assert entry["samples"] > 0 and entry["startup_samples_left_out"] > 0
        assert sum(entry["categories_pct"].values()) == pytest.approx(100, abs=0.5)
        assert {"waitress threads", "model thread"} <= set(entry["threads_pct"])
        # Steps large enough to be sampled in every run (multipart parsing, ~1 % of a MobileNetV2
        # request, went unsampled in one CI run of 750 samples; summarise's sorting is tested below).
        for step in ("network call", "JPEG open, decode, EXIF (decode_image)"):
            assert entry["categories_pct"].get(step, 0) > 0, (mode, step, entry["categories_pct"])
    assert "holding the interpreter lock" in result.stdout


def test_profile_samples_are_summed_by_the_first_step_their_stack_names(tmp_path):
    from bench.profile import summarise

    raw = tmp_path / "raw.txt"
    raw.write_text(
        "process;_find_and_load (<frozen importlib._bootstrap>:1) 7\n"
        "thread;handler_thread (waitress/task.py:1);_parse_multipart (werkzeug/formparser.py:2) 3\n"
        "thread;handler_thread (waitress/task.py:1);decode_image (dataplane/images.py:9) 4\n"
        "thread;run (registry/batching.py:5);_infer (runtimes/openvino.py:3) 12\n"
        "thread;somewhere (x.py:1) 1\n")
    summary = summarise(raw)
    assert (summary["samples"], summary["startup_samples_left_out"]) == (20, 7)
    assert summary["categories_pct"] == {"network call": 60.0, "JPEG open, decode, EXIF (decode_image)": 20.0,
                                         "multipart form parsing (werkzeug)": 15.0, "other": 5.0}
    assert summary["threads_pct"] == {"model thread": 60.0, "waitress threads": 35.0, "other": 5.0}
