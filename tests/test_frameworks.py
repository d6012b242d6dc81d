"""The frameworks: imported once, in order, then frozen out of the garbage collector's walks;
torch's OpenMP threads sleep when idle unless the deployment says otherwise."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.paths import ROOT


def test_imported_frameworks_are_frozen_out_of_full_collections():
    code = ("import gc; from runtimes import frameworks; before = gc.get_freeze_count(); "
            "frameworks.require({'torch'}); print(before, gc.get_freeze_count())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = map(int, result.stdout.split())
    assert before == 0 and after > 100_000   # torch, torchvision and imageai's objects


SPIN = """
import resource, time
from runtimes import frameworks
frameworks.require({'torch'})
import torch
x = torch.rand(4_000_000)   # large enough for torch to split over its threads
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
time.sleep(1.0)             # the imports' own background work settles
x.sigmoid()
start = cpu()
time.sleep(0.2)
print((cpu() - start) * 1e3)
"""


def _cpu_ms_while_idle_after_a_parallel_op(**env) -> float:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    result = subprocess.run([sys.executable, "-c", SPIN], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=environ)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="torch runs one thread: nothing spins")
def test_torch_s_idle_threads_sleep_unless_the_deployment_asks_them_to_spin():
    """libgomp's default spins ~8 ms of CPU after each parallel op here, ACTIVE spins for as long
    as it waits; with the service's default the process is idle while it sleeps."""
    assert _cpu_ms_while_idle_after_a_parallel_op() < 3.0
    assert _cpu_ms_while_idle_after_a_parallel_op(OMP_WAIT_POLICY="ACTIVE") > 100.0   # kept: theirs to set
