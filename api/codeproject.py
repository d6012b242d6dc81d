"""CodeProject.AI Server's status routes, for the clients written for it (Blue Iris, its SDKs,
its dashboard and explorer) that ask the server about itself before or beside sending work to
`/v1/vision/...` (api/deepstack.py). Served under both of its prefixes: `/v1/status` (the legacy
one, which Blue Iris calls) and `/v1/server/status` (since its 2.4.0), GET only, as its
ServerStatusController declares them.

Every answer is about this service, never a CodeProject.AI Server it is not: `ping` and
`version` give this service's own version (api.VERSION); `updateavailable` says, in
CodeProject.AI's own failure shape (success false, HTTP 200), that the latest version is not
known: the service contacts no server to find out. CodeProject.AI's module routes
(`analysis/list`, `modules/list`, `module/list/...`), `system-status` and `Paths` are not
served: they would have to invent modules, ids, states or host figures. Errors (a missing API
key, a wrong method) are the service's usual JSON error answers. docs/neighbours.md has the
sources."""
from __future__ import annotations

import socket

from flask import Blueprint, jsonify

from api import SERVICE_NAME, VERSION

bp = Blueprint("codeproject", __name__, url_prefix="/v1")

# CodeProject.AI's two prefixes of its ServerStatusController.
PREFIXES = ("/status", "/server/status")


def version_info(version: str = VERSION) -> dict:
    """CodeProject.AI's VersionInfo (camelCase, as ASP.NET writes it) for a major.minor.patch
    version: no pre-release, build, file or release notes, which this service does not have."""
    major, minor, patch = (int(part) for part in version.split("."))
    return {"major": major, "minor": minor, "patch": patch, "preRelease": None, "securityUpdate": False,
            "build": 0, "file": None, "releaseNotes": None}


def _answer(success: bool, **fields):
    """CodeProject.AI's ServerResponse fields around `fields`: `code` is the HTTP status it
    answers with (200 even where `success` is false), `hostname` the machine's name."""
    return jsonify(success=success, **fields, server=SERVICE_NAME, code=200, hostname=socket.gethostname())


def version():
    """`ping` and `version`: CodeProject.AI answers both with its VersionResponse (`message` is
    the version string); here, this service's version."""
    return _answer(True, message=VERSION, version=version_info())


def update_available():
    """Whether a newer release exists is not known offline: CodeProject.AI's own answer when it
    cannot retrieve the latest version (success false), with this service's version as `current`."""
    return _answer(False, message=f"Unable to retrieve latest version: {SERVICE_NAME} does not check for updates",
                   version=None, updateAvailable=None, latest=None, current=version_info())


for _prefix in PREFIXES:
    bp.add_url_rule(f"{_prefix}/ping", "ping", version, methods=["GET"])
    bp.add_url_rule(f"{_prefix}/version", "version", version, methods=["GET"])
    bp.add_url_rule(f"{_prefix}/updateavailable", "updateavailable", update_available, methods=["GET"])
