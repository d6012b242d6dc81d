"""The frameworks: imported once, in order, then frozen out of the garbage collector's walks;
torch's idle OpenMP threads spin only briefly unless the deployment says otherwise."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtimes import frameworks
from tests.support.paths import ROOT


def test_imported_frameworks_are_frozen_out_of_full_collections():
    code = ("import gc; from runtimes import frameworks; before = gc.get_freeze_count(); "
            "frameworks.require({'torch'}); print(before, gc.get_freeze_count())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = map(int, result.stdout.split())
    assert before == 0 and after > 100_000   # torch, torchvision and imageai's objects


SPIN = """
import os, resource, time
from contract import InferenceOptions
from runtimes import frameworks
frameworks.require({'torch'}, InferenceOptions(runtime=os.environ["TEST_RUNTIME"]))
import torch
x = torch.rand(4_000_000)   # large enough for torch to split over its threads
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
time.sleep(1.0)             # the imports' own background work settles
x.sigmoid()
start = cpu()
time.sleep(0.2)
print(os.environ.get("GOMP_SPINCOUNT"), (cpu() - start) * 1e3)
"""


def _idle_after_a_parallel_op(runtime: str = "openvino", **env) -> tuple[str, float]:
    """The GOMP_SPINCOUNT torch loaded with, and the ms of CPU the process used while it slept."""
    environ = ({k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
               | {"TEST_RUNTIME": runtime} | env)
    result = subprocess.run([sys.executable, "-c", SPIN], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=environ)
    assert result.returncode == 0, result.stderr[-2000:]
    spin, ms = result.stdout.split()[-2:]
    return spin, float(ms)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="torch runs one thread: nothing spins")
def test_torch_s_idle_threads_spin_briefly_around_openvino_unless_the_deployment_says_otherwise():
    """libgomp's default spins ~8 ms of CPU after each parallel op here, ACTIVE spins for as long
    as it waits. Where OpenVINO runs the networks, the process is idle while it sleeps; where
    torch runs them, libgomp keeps its default spin."""
    spin, ms = _idle_after_a_parallel_op()
    assert spin == frameworks.OPENMP_SPIN_COUNT and ms < 3.0
    spin, ms = _idle_after_a_parallel_op("framework")
    assert spin == "None" and ms > 3.0   # ~8 ms: the default, measurably spinning
    # The deployment's choice is kept: with ACTIVE the worker spins through the whole 200 ms
    # sleep when it has a core (40 ms is far above the default's 8-9 ms and leaves room for a
    # busy machine); with its own spin count, that count.
    spin, ms = _idle_after_a_parallel_op(OMP_WAIT_POLICY="ACTIVE")
    assert spin == "None" and ms > 40.0
    assert _idle_after_a_parallel_op(GOMP_SPINCOUNT="300000")[0] == "300000"
