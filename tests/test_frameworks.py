"""The frameworks: imported once, in order, then frozen out of the garbage collector's walks."""
from __future__ import annotations

import subprocess
import sys

from tests.support.paths import ROOT


def test_imported_frameworks_are_frozen_out_of_full_collections():
    code = ("import gc; from runtimes import frameworks; before = gc.get_freeze_count(); "
            "frameworks.require({'torch'}); print(before, gc.get_freeze_count())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = map(int, result.stdout.split())
    assert before == 0 and after > 100_000   # torch, torchvision and imageai's objects
