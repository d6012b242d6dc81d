"""The benchmark in its seconds-long smoke mode (the real runs are by hand: docs/benchmarks.md)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT


@pytest.mark.slow
def test_benchmark_smoke(random_models_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--models", "mobilenet",
                             "--models-dir", str(random_models_dir), "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    entry = report["models"]["mobilenet"]
    assert entry["raw"]["640x480"]["raw_ms"] > 0
    for system in ("service", "naive"):
        levels = entry[system]["images"]["640x480"]
        assert [level["concurrency"] for level in levels] == [1, 2]
        assert all(level["ok"] > 0 and level["p50_ms"] > 0 for level in levels)
        assert entry[system]["ready_seconds"] > 0 and entry[system]["peak_rss_mb"] > 0
    assert "service:" in result.stdout and "naive:" in result.stdout
