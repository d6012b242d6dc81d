"""Render a `python -m bench --json` result as Markdown tables, and with --charts DIR also as
PNG charts (throughput and p95 latency against clients) linked from the Markdown:
    python -m bench.report out.json [--charts docs/charts]"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(report: dict) -> str:
    lines = [f"Machine: {report['machine']}. Settings: {report.get('settings') or 'defaults'}. "
             f"Weights: {report.get('weights')}.", ""]
    for name, entry in report["models"].items():
        lines += [f"### {name}", "", "Raw cost in-process (median, ms):", ""]
        raw_keys = sorted({k for raw in entry["raw"].values() for k in raw})
        lines += ["| image | " + " | ".join(raw_keys) + " |", "|---" * (len(raw_keys) + 1) + "|"]
        for label, raw in entry["raw"].items():
            lines.append(f"| {label} | " + " | ".join(_f(raw.get(k), 2) for k in raw_keys) + " |")
        lines += ["", "| system | image | concurrency | req/s | p50 ms | p95 ms | p99 ms | other statuses |",
                  "|---|---|---|---|---|---|---|---|"]
        for system in ("service", "naive"):
            data = entry.get(system)
            if not data:
                continue
            for label, levels in data["images"].items():
                for level in levels:
                    others = {k: v for k, v in level["statuses"].items() if k != "200"} or ""
                    lines.append(f"| {system} | {label} | {level['concurrency']} | {_f(level['throughput_rps'], 2)} | "
                                 f"{_f(level['p50_ms'])} | {_f(level['p95_ms'])} | {_f(level['p99_ms'])} | {others} |")
        lines.append("")
        for system in ("service", "naive"):
            data = entry.get(system)
            if data:
                lines.append(f"- {system}: ready {_f(data['ready_seconds'])} s after start, "
                             f"peak resident memory {_f(data['peak_rss_mb'], 0)} MB")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="a `python -m bench --json` file")
    parser.add_argument("--charts", type=Path, help="folder for the PNG charts (linked relative to the cwd)")
    args = parser.parse_args(argv)
    report = json.loads(args.result.read_text())
    print(render(report))
    if args.charts:
        from bench.charts import draw
        for path in draw(report, args.charts):
            print(f"![{path.stem}]({path.as_posix()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
