"""Which wheels a package index holds, read the way pip reads it, without downloading any: the
indexes pip is configured with here (`pip config list`: index-url, extra-index-url, find-links;
PIP_* variables included), each asked for a project's file names (PEP 691 JSON where the index
speaks it, else PEP 503 HTML, a file:// index or a find-links folder), and pip's own `packaging`
deciding which wheel a platform can install. tests/test_platforms.py proves with it that every
pinned requirement installs from a wheel on each platform the image is built for."""
from __future__ import annotations

import concurrent.futures
import html
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.tags import compatible_tags, cpython_tags
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

PYPI = "https://pypi.org/simple"
TIMEOUT_S = 15
_ANCHOR = re.compile(r"<a\s[^>]*>([^<]+)</a>", re.IGNORECASE)


class Unreachable(Exception):
    """An index that did not answer (network, DNS, a server error)."""


def pip_indexes() -> list[str]:
    """The indexes and find-links locations pip uses here, its main index first."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         check=True).stdout
    config: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        option = key.split(".", 1)[-1]
        config.setdefault(option, []).extend(value.strip().strip("'\"").split())
    main = (config.get("index-url") or [PYPI])[0]
    return list(dict.fromkeys([main, *config.get("extra-index-url", []), *config.get("find-links", [])]))


def platform_tags(machine: str, glibc: tuple[int, int], python: tuple[int, int]) -> set[str]:
    """The wheel tags pip accepts for CPython `python` on Linux `machine` with `glibc`."""
    major, minor = glibc
    platforms = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms += [f"{name}_{machine}" for m, name in legacy.items() if m <= minor and
                  (machine == "x86_64" or m >= 17)]
    platforms.append(f"linux_{machine}")
    abi = f"cp{python[0]}{python[1]}"
    tags = [*cpython_tags(python, abis=[abi], platforms=platforms), *compatible_tags(python, abi, platforms=platforms)]
    return {str(tag) for tag in tags}


def marker_environment(machine: str, python: tuple[int, int]) -> dict[str, str]:
    version = f"{python[0]}.{python[1]}"
    return {"implementation_name": "cpython", "implementation_version": f"{version}.0", "os_name": "posix",
            "platform_machine": machine, "platform_release": "", "platform_system": "Linux",
            "platform_version": "", "python_full_version": f"{version}.0", "platform_python_implementation": "CPython",
            "python_version": version, "sys_platform": "linux"}


def pinned(path: Path) -> list[Requirement]:
    """The `name==version[; marker]` lines of a requirements file (comments dropped)."""
    found = []
    for line in path.read_text().splitlines():
        text = line.split(" #", 1)[0].strip()
        if text and not text.startswith(("#", "-")):
            requirement = Requirement(text)
            assert [s.operator for s in requirement.specifier] == ["=="], f"{path.name}: {text} is not pinned"
            found.append(requirement)
    return found


def file_names(index: str, project: str) -> list[str]:
    """The file names `index` holds for `project` ([] when it does not have it). Raises
    Unreachable when the index does not answer."""
    name = canonicalize_name(project)
    parts = urllib.parse.urlsplit(index)
    if parts.scheme in ("", "file"):
        folder = Path(urllib.request.url2pathname(parts.path))
        if (folder / name).is_dir():    # a PEP 503 file index: <index>/<project>/index.html
            page = folder / name / "index.html"
            return _from_html(page.read_text()) if page.is_file() else [p.name for p in (folder / name).iterdir()]
        return [p.name for p in folder.glob("*") if _project_of(p.name) == name] if folder.is_dir() else []
    request = urllib.request.Request(f"{index.rstrip('/')}/{name}/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body, kind = response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise Unreachable(f"{index}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(f"{index}: {getattr(exc, 'reason', exc)}") from None
    if kind.endswith("json"):
        return [item["filename"] for item in json.loads(body)["files"]]
    return _from_html(body.decode("utf-8", "replace"))


def _from_html(page: str) -> list[str]:
    return [html.unescape(text).strip() for text in _ANCHOR.findall(page)]


def _project_of(filename: str) -> str:
    return canonicalize_name(filename.split("-", 1)[0]) if filename.endswith(".whl") else ""


def installable_wheel(requirement: Requirement, files: list[str], tags: set[str]) -> str | None:
    """The first of `files` that is a wheel of the pinned version (a local build such as
    2.14.1+cpu included, as pip's == takes it) with a tag in `tags`."""
    pinned_version = next(iter(requirement.specifier)).version
    for filename in files:
        if not filename.endswith(".whl") or f"-{pinned_version}" not in filename:
            continue   # (a quick look before parsing: tensorflow alone lists thousands of files)
        try:
            name, version, _, wheel_tags = parse_wheel_filename(filename)
        except ValueError:
            continue
        if (name == canonicalize_name(requirement.name) and requirement.specifier.contains(version, prereleases=True)
                and any(str(tag) in tags for tag in wheel_tags)):
            return filename
    return None


def listings(indexes: list[str], projects: set[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({project: every file name on every index}, {index: why it did not answer}), asked in
    parallel (one request per project and index)."""
    files: dict[str, list[str]] = {project: [] for project in projects}
    unreachable: dict[str, str] = {}
    first, *rest = sorted(projects)
    answering = []
    for index in indexes:   # one question first: an index that is down is not asked again
        try:
            files[first] += file_names(index, first)
            answering.append(index)
        except Unreachable as exc:
            unreachable[index] = str(exc)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        asked = {pool.submit(file_names, index, project): (index, project)
                 for index in answering for project in rest}
        for future, (index, project) in asked.items():
            try:
                files[project] += future.result()
            except Unreachable as exc:
                unreachable[index] = str(exc)
    return files, unreachable
