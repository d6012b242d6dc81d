"""Throughput and p95 latency against the number of clients, drawn from a `python -m bench
--json` result: one PNG per model and image size, the service beside the naive baseline,
titled with the model, the image and the machine the numbers came from."""
from __future__ import annotations

from pathlib import Path

SYSTEMS = {"service": ("#1f77b4", "o", "this service"), "naive": ("#d62728", "s", "naive Flask + model.predict")}


def draw(report: dict, folder: Path) -> list[Path]:
    """Write the charts into `folder`; returns their paths, in report order."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model, entry in report["models"].items():
        labels = list(entry.get("service", {}).get("images", {}))
        for label in labels:
            figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
            for system, (colour, marker, name) in SYSTEMS.items():
                levels = entry.get(system, {}).get("images", {}).get(label)
                if not levels:
                    continue
                clients = [level["concurrency"] for level in levels]
                throughput.plot(clients, [level["throughput_rps"] for level in levels], marker=marker,
                                color=colour, label=name)
                latency.plot(clients, [level["p95_ms"] for level in levels], marker=marker, color=colour, label=name)
            for axes, title in ((throughput, "throughput (requests/s)"), (latency, "p95 latency (ms)")):
                axes.set_xlabel("concurrent clients")
                axes.set_title(title)
                axes.set_xticks(clients)
                axes.set_ylim(bottom=0)
                axes.grid(alpha=0.3)
                axes.legend()
            device = report.get("device", "cpu")
            figure.suptitle(f"{model}, {label} JPEG, {device} - {report['machine']}", fontsize=10)
            path = folder / f"{model}-{label}-{device.split(':')[0]}.png"
            figure.savefig(path, dpi=90)
            plt.close(figure)
            written.append(path)
    return written
