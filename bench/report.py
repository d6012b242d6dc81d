"""Render a `python -m bench --json` result as Markdown tables, and with --charts DIR also as
PNG charts (throughput and p95 latency against clients) linked from the Markdown; given several
results of the same benchmark (one per WORKERS value, say), one chart per model and image with a
line per result:
    python -m bench.report out.json [--charts charts/]
    python -m bench.report workers1.json workers4.json --charts charts/"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(report: dict) -> str:
    lines = [f"Machine: {report['machine']}. Started: {report.get('started', '-')}, load average "
             f"{report.get('load_average_at_start', '-')} at start, {report.get('load_average_at_end', '-')} at end. Settings: {report.get('settings') or 'defaults'}. "
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
    from bench.compare import markdown
    return "\n".join(lines + markdown(report.get("comparison", {})))


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="`python -m bench --json` files")
    parser.add_argument("--charts", type=Path, help="folder for the PNG charts (linked relative to the cwd)")
    args = parser.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.results]
    for report in reports:
        print(render(report))
    if args.charts:
        from bench.charts import draw, draw_runs
        paths = draw(reports[0], args.charts) if len(reports) == 1 else draw_runs(reports, args.charts)
        for path in paths:
            print(f"![{path.stem}]({path.as_posix()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
