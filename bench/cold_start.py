"""Cold starts: `python -m bench.cold_start [--models mobilenet,tiny_yolo,mobilenet+tiny_yolo]
[--variants framework,openvino,serving,convert] [--rounds 5] [--json out.json]`.

For each model (or set of models joined by '+'), `python app.py` (PRELOAD_MODELS=true, result
cache off) is started as each variant runs it:
- framework: the full install, INFERENCE_RUNTIME=framework (TensorFlow for the classifiers,
  torch for the detectors);
- openvino: the full install, OpenVINO with the converted-model cache warm (MODELS_DIR's own
  `.openvino`, filled first by `python -m models.convert`);
- serving: the serving-only install (.venv-serving: requirements-serving.txt, no framework) on
  the same warm cache;
- convert: the full install on OpenVINO with an empty cache (a scratch MODELS_DIR linking the
  same weight files).
Each start is timed to `/ready` 200 and to the answer of its first request (a 640x480 JPEG),
then sent 100 more requests; the report gives the resident memory after them and the framework
libraries mapped in the process (TensorFlow's, torch's). The variants take turns within each
round, so a slow minute on a shared machine hits them alike; the medians are reported.
Weights: --models-dir, --random-weights as `python -m bench`.
"""
from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import ROOT, add_weight_arguments, bench_images, free_port, multipart, publish

VARIANTS = ("framework", "openvino", "serving", "convert")
SERVING_PYTHON = ROOT / ".venv-serving" / "bin" / "python"
FRAMEWORK_LIBRARIES = ("libtensorflow", "_pywrap_tensorflow", "libtorch")
REQUESTS_AFTER = 100


def environment(names: list[str], models_dir: Path, variant: str) -> dict[str, str]:
    from models.builtins import BUILTINS

    classifiers = [n for n in names if BUILTINS[n].task == "classification"]
    detectors = [n for n in names if BUILTINS[n].task == "detection"]
    env = {"MODELS_DIR": str(models_dir), "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true", "CACHE_MAXSIZE": "0",
           "INFERENCE_RUNTIME": "framework" if variant == "framework" else "openvino",
           "IMAGE_CLASSIFICATION_ENABLED": str(bool(classifiers)).lower(),
           "OBJECT_DETECTION_ENABLED": str(bool(detectors)).lower()}
    if classifiers:
        env["IMAGE_CLASSIFICATION_MODEL"] = ",".join(classifiers)
    if detectors:
        env["OBJECT_DETECTION_MODEL"] = ",".join(detectors)
    return env


def ask(port: int, method: str, path: str, body: bytes | None = None, content_type: str = "") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def _get(port: int, path: str) -> dict:
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def scratch_models(names: list[str], models_dir: Path, scratch: Path) -> Path:
    """A MODELS_DIR linking the same weight files, with an empty converted-model cache."""
    from models.builtins import CATALOG

    for name in names:
        link = CATALOG[name].path(scratch)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(CATALOG[name].path(models_dir).resolve())
    return scratch


def start(names: list[str], variant: str, models_dir: Path, body: bytes, content_type: str) -> dict:
    """One start: seconds to /ready and to the first answer, memory after 100 requests, the
    framework libraries mapped."""
    with tempfile.TemporaryDirectory() as scratch:
        if variant == "convert":
            models_dir = scratch_models(names, models_dir, Path(scratch))
        python = str(SERVING_PYTHON) if variant == "serving" else sys.executable
        port = free_port()
        started = time.monotonic()
        process = subprocess.Popen([python, "app.py"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, **environment(names, models_dir, variant), "PORT": str(port)})
        try:
            return _measure(process, port, started, names, body, content_type)
        finally:
            process.terminate()
            process.wait(timeout=60)


def _measure(process, port: int, started: float, names: list[str], body: bytes, content_type: str) -> dict:
    while ask(port, "GET", "/ready") != 200:
        if process.poll() is not None or time.monotonic() - started > 600:
            raise SystemExit(f"{'+'.join(names)} did not become ready")
        time.sleep(0.02)
    ready = time.monotonic() - started
    from models.builtins import BUILTINS

    paths = [f"/v2/{'classify' if BUILTINS[n].task == 'classification' else 'detect'}?model={n}" for n in names]
    if ask(port, "POST", paths[0], body, content_type) != 200:
        raise SystemExit(f"the first request to {'+'.join(names)} failed")
    first = time.monotonic() - started
    for i in range(REQUESTS_AFTER):
        ask(port, "POST", paths[i % len(paths)], body, content_type)
    runtimes = {m["name"]: m["runtime"] for m in _get(port, "/models")["models"]}
    maps = Path(f"/proc/{process.pid}/maps").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return {"ready_s": ready, "first_answer_s": first, "rss_mb_after_requests": rss_kb / 1024, "runtimes": runtimes,
            "frameworks_mapped": sorted({line.rsplit("/", 1)[-1] for line in maps
                                         if any(lib in line for lib in FRAMEWORK_LIBRARIES)})}


def fill_cache(names: list[str], models_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "models.convert", *names], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MODELS_DIR": str(models_dir)})
    if done.returncode != 0:
        raise SystemExit(f"python -m models.convert {' '.join(names)} failed: {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,resnet,tiny_yolo,yolo,retina,mobilenet+tiny_yolo")
    parser.add_argument("--variants", default="framework,openvino,serving")
    add_weight_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sets = [[n for n in item.split("+") if n] for item in args.models.split(",") if item.strip()]
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS) or ("serving" in variants and not SERVING_PYTHON.exists()):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)} (serving needs .venv-serving: ./run_tests.sh)")
    names = sorted({n for group in sets for n in group})
    if args.random_weights:
        from bench.random_weights import CALIBRATED_CANDIDATES, write_missing
        write_missing(names, args.models_dir, CALIBRATED_CANDIDATES)
    fill_cache(names, args.models_dir)
    content_type, body = multipart(bench_images()["640x480"])
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average_at_start": os.getloadavg(),
              "rounds": args.rounds, "requests_after_the_first": REQUESTS_AFTER, "models": {}}
    for group in sets:
        runs: dict[str, list[dict]] = {variant: [] for variant in variants}
        for _ in range(args.rounds):
            for variant in variants:
                runs[variant].append(start(group, variant, args.models_dir, body, content_type))
        report["models"]["+".join(group)] = {variant: summary(found) for variant, found in runs.items()}
    report["load_average_at_end"] = os.getloadavg()
    return publish(report, args.json, show)


def summary(runs: list[dict]) -> dict:
    medians = {f"median_{k}": statistics.median(run[k] for run in runs)
               for k in ("ready_s", "first_answer_s", "rss_mb_after_requests")}
    return {"runs": runs, **medians, "frameworks_mapped": sorted({lib for run in runs for lib in run["frameworks_mapped"]})}


def show(report: dict) -> None:
    print(f"machine: {report['machine']}; started {report['started']}; load average "
          f"{report['load_average_at_start']} at start, {report['load_average_at_end']} at end; "
          f"medians of {report['rounds']} starts")
    print("| models | variant | ready (s) | first answer (s) | RSS after 100 requests (MB) | frameworks mapped |")
    print("|---|---|---|---|---|---|")
    for name, entry in report["models"].items():
        for variant, found in entry.items():
            print(f"| {name} | {variant} | {found['median_ready_s']:.2f} | {found['median_first_answer_s']:.2f} | "
                  f"{found['median_rss_mb_after_requests']:.0f} | {', '.join(found['frameworks_mapped']) or 'none'} |")


if __name__ == "__main__":
    raise SystemExit(main())
