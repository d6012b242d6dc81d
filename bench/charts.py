"""Throughput and p95 latency against the number of clients, drawn from `python -m bench --json`
results, titled with the model, the image and the machine the numbers came from:
- `draw`: one result, one PNG per model and image size, the service beside the naive baseline;
- `draw_runs`: several results of the same benchmark (for example one per WORKERS value), one
  PNG per model and image size, a line per result, labelled by the settings that differ."""
from __future__ import annotations

from pathlib import Path

SYSTEMS = {"service": ("#1f77b4", "o", "this service"), "naive": ("#d62728", "s", "naive Flask + model.predict")}
MARKERS = "os^Dv<>ph*"


def draw(report: dict, folder: Path) -> list[Path]:
    """Write the charts into `folder`; returns their paths, in report order."""
    written = []
    for model, entry in report["models"].items():
        for label in entry.get("service", {}).get("images", {}):
            lines = [(name, colour, marker, entry.get(system, {}).get("images", {}).get(label))
                     for system, (colour, marker, name) in SYSTEMS.items()]
            device = report.get("device", "cpu")
            written.append(_chart(lines, f"{model}, {label} JPEG, {device} - {report['machine']}",
                                  folder / f"{model}-{label}-{device.split(':')[0]}.png"))
    return written


def draw_runs(reports: list[dict], folder: Path) -> list[Path]:
    """The service's levels in each report, a line per report, one chart per model and image
    that the reports share; returns the paths."""
    keys = differing_settings(reports)
    names = [", ".join(f"{key}={report.get('settings', {}).get(key, 'default')}" for key in keys)
             or f"run {index + 1}" for index, report in enumerate(reports)]
    written = []
    first = reports[0]
    for model, entry in first["models"].items():
        for label in entry.get("service", {}).get("images", {}):
            lines = [(names[i], None, MARKERS[i % len(MARKERS)],
                      report["models"].get(model, {}).get("service", {}).get("images", {}).get(label))
                     for i, report in enumerate(reports)]
            device = first.get("device", "cpu")
            written.append(_chart(lines, f"{model}, {label} JPEG, {device} - {first['machine']}",
                                  folder / f"{model}-{label}-{device.split(':')[0]}-by-{'-'.join(keys) or 'run'}.png"))
    return written


def differing_settings(reports: list[dict]) -> list[str]:
    """The settings whose values are not the same in every report (what tells the runs apart)."""
    return sorted({key for report in reports for key in report.get("settings", {})
                   if len({other.get("settings", {}).get(key) for other in reports}) > 1})


def _chart(lines: list[tuple], title: str, path: Path) -> Path:
    """(name, colour or None, marker, levels or None) per line: throughput and p95 panels."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    clients = []
    for name, colour, marker, levels in lines:
        if not levels:
            continue
        clients = sorted(set(clients) | {level["concurrency"] for level in levels})
        x = [level["concurrency"] for level in levels]
        throughput.plot(x, [level["throughput_rps"] for level in levels], marker=marker, color=colour, label=name)
        latency.plot(x, [level["p95_ms"] for level in levels], marker=marker, color=colour, label=name)
    for axes, heading in ((throughput, "throughput (requests/s)"), (latency, "p95 latency (ms)")):
        axes.set_xlabel("concurrent clients")
        axes.set_title(heading)
        axes.set_xticks(clients)
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
