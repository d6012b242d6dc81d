"""OpenVINO beside TensorFlow/torch in one `python -m bench` result: the ratios the branch was
built for, each with its target, and whether this run met it.

Targets: a 640x480 JPEG through the service on OpenVINO at one client (p50) costs at most
0.55x (MobileNetV2) or 0.6x (ResNet50) of TensorFlow's in-process decode + resize + compiled
call; YOLO's forward pass is at least 2x faster on OpenVINO than on torch; a cold start with
the converted-model cache warm is no slower than one without OpenVINO.

Where the run measured the machine's convolution rate and the network's arithmetic
(bench/compute.py), each target also gets the best this machine allows: the ratio the network
alone would give running at the measured float32 rate (decoding and HTTP come on top in the
service), and the forward speed-up over the framework at the float32 and bfloat16 rates.
"""
from __future__ import annotations

from bench.compute import floor_ms

IMAGE = "640x480"
SERVICE_TARGETS = {"mobilenet": 0.55, "resnet": 0.6}
FORWARD_TARGET = 2.0


def _level(entry: dict, clients: int) -> dict | None:
    for level in entry.get("service", {}).get("images", {}).get(IMAGE, []):
        if level["concurrency"] == clients:
            return level
    return None


def _pair(report: dict) -> dict[str, dict]:
    """model -> {runtime: entry} for the models measured on both runtimes."""
    pairs: dict[str, dict] = {}
    for key, entry in report["models"].items():
        name, _, runtime = key.rpartition(".")
        pairs.setdefault(name, {})[runtime] = entry
    return {name: runs for name, runs in pairs.items() if {"tensorflow", "openvino"} <= set(runs)}


def _ratio(numerator, denominator):
    return None if not numerator or not denominator else numerator / denominator


def compare_model(name: str, framework: dict, ov: dict, rates: dict | None = None) -> dict:
    rates = rates or {}
    gflop = (ov.get("network") or framework.get("network") or {}).get("gflop")
    floor = {precision: floor_ms(gflop, rate) for precision, rate in rates.items()}
    out = {"service": {}}
    for clients in (1, 8):
        for runtime, entry in (("framework", framework), ("openvino", ov)):
            level = _level(entry, clients)
            if level:
                out["service"][f"{runtime}_c{clients}"] = {"p50_ms": level["p50_ms"], "rps": level["throughput_rps"]}
    raw_framework = framework["raw"].get(IMAGE, {})
    if name in SERVICE_TARGETS and _level(ov, 1):
        ratio = _ratio(_level(ov, 1)["p50_ms"], raw_framework.get("raw_ms"))
        out["service_p50_vs_framework_raw"] = {"ratio": ratio, "target": f"<= {SERVICE_TARGETS[name]}",
                                               "met": ratio is not None and ratio <= SERVICE_TARGETS[name],
                                               "network_alone_at_f32_rate": _ratio(floor.get("f32"), raw_framework.get("raw_ms"))}
    forward = _ratio(raw_framework.get("forward_ms"), ov["raw"].get(IMAGE, {}).get("forward_ms"))
    if forward is not None:
        out["forward_speedup"] = {"ratio": forward, "target": f">= {FORWARD_TARGET}", "met": forward >= FORWARD_TARGET,
                                  **{f"at_{precision}_rate": _ratio(raw_framework.get("forward_ms"), least)
                                     for precision, least in floor.items()}}
    cold = {"framework": framework.get("service", {}).get("ready_seconds"),
            "openvino_cache_warm": ov.get("service", {}).get("ready_seconds"),
            "openvino_no_cache": ov.get("cold_start_no_cache_seconds")}
    warm_ratio = _ratio(cold["openvino_cache_warm"], cold["framework"])
    out["cold_start_seconds"] = {**cold, "warm_vs_framework": warm_ratio, "target": "warm <= framework",
                                 "met": warm_ratio is not None and warm_ratio <= 1.0}
    return out


def compare(report: dict) -> dict:
    rates = report.get("compute", {}).get("conv_gflops_per_s")
    return {name: compare_model(name, runs["tensorflow"], runs["openvino"], rates) for name, runs in _pair(report).items()}


def print_comparison(comparison: dict) -> None:
    for name, result in comparison.items():
        print(f"\n== {name}: OpenVINO vs TensorFlow/torch ==")
        for key, value in result["service"].items():
            print(f"  service {IMAGE} {key}: p50 {value['p50_ms']:.1f} ms, {value['rps']:.2f} req/s")
        for key in ("service_p50_vs_framework_raw", "forward_speedup", "cold_start_seconds"):
            if key in result:
                print(f"  {key}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in result[key].items()))


def markdown(comparison: dict) -> list[str]:
    """The comparison as Markdown tables (bench.report)."""
    if not comparison:
        return []
    lines = ["### OpenVINO vs TensorFlow/torch", "",
             "| model | framework p50 c=1 | OpenVINO p50 c=1 | framework req/s c=8 | OpenVINO req/s c=8 | "
             "target | ratio | met | this machine's limit |", "|---|---|---|---|---|---|---|---|---|"]
    for name, result in comparison.items():
        service = result["service"]
        target = result.get("service_p50_vs_framework_raw") or result.get("forward_speedup") or {}
        cells = [service.get(k, {}).get(m) for k, m in (("framework_c1", "p50_ms"), ("openvino_c1", "p50_ms"),
                                                         ("framework_c8", "rps"), ("openvino_c8", "rps"))]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells)
                     + f" | {target.get('target', '-')} | {_fmt(target.get('ratio'))} | {target.get('met', '-')} | "
                     + f"{_limit(target)} |")
    lines += ["", "| model | cold start, framework (s) | OpenVINO, cache warm (s) | OpenVINO, no cache (s) | met |",
              "|---|---|---|---|---|"]
    for name, result in comparison.items():
        cold = result["cold_start_seconds"]
        lines.append(f"| {name} | {_fmt(cold['framework'])} | {_fmt(cold['openvino_cache_warm'])} | "
                     f"{_fmt(cold['openvino_no_cache'])} | {cold['met']} |")
    return lines + [""]


def _limit(target: dict) -> str:
    """The best ratio the measured convolution rate allows, as a Markdown cell."""
    if target.get("network_alone_at_f32_rate") is not None:
        return f"network alone at the f32 rate: {_fmt(target['network_alone_at_f32_rate'])}"
    rates = [f"{precision} {_fmt(target[key])}" for precision, key in (("f32", "at_f32_rate"), ("bf16", "at_bf16_rate"))
             if target.get(key) is not None]
    return f"at the measured rate: {', '.join(rates)}" if rates else "-"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"
