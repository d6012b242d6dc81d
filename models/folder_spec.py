"""`MODELS_DIR/<name>/model.json`: a user's own model folder, validated field by field.

Every problem names the folder and the field, so a bad folder is fixed in one pass.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from contract import LETTERBOX, STRETCH

SPEC_FILE = "model.json"
TASKS = ("classification", "detection")
FORMATS = ("keras", "tflite", "onnx")
RESIZES = (STRETCH, LETTERBOX)
OUTPUTS = ("softmax", "logits")
LAYOUTS = ("yolov8", "yolov5")
BOX_UNITS = ("normalized", "pixels")
_KEYS = {"task", "format", "file", "labels", "input", "output", "layout", "box_units", "iou_threshold"}
_INPUT_KEYS = {"size", "resize", "mean", "std"}


class SpecError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclasses.dataclass(frozen=True)
class FolderSpec:
    name: str
    folder: Path
    task: str
    format: str
    file: str
    labels_file: str
    labels: tuple[str, ...]
    size: tuple[int, int] | None
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str = "softmax"
    layout: str | None = None
    box_units: str | None = None
    iou_threshold: float = 0.45

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def where(self) -> str:
        """How problems name the folder's spec: relative to MODELS_DIR, never an absolute path."""
        return spec_location(self.name)

    def describe(self) -> dict:
        info = {"task": self.task, "format": self.format, "file": self.file, "labels": self.labels_file,
                "input": {"size": list(self.size) if self.size else None, "resize": self.resize,
                          "mean": list(self.mean), "std": list(self.std)}}
        if self.task == "classification":
            info["output"] = self.output
        else:
            info.update(layout=self.layout, box_units=self.box_units, iou_threshold=self.iou_threshold)
        return info


def spec_location(name: str) -> str:
    return f"MODELS_DIR/{name}/{SPEC_FILE}"


def load_spec(folder: Path) -> FolderSpec:
    """The folder's model.json, checked field by field; SpecError lists every problem."""
    folder = Path(folder)
    reader = _SpecReader(folder, _read_json(folder))
    raw = reader.raw
    for key in sorted(set(raw) - _KEYS):
        reader.problem(key, f"is not a known field; known fields: {', '.join(sorted(_KEYS))}")
    task = reader.choice("task", TASKS, required=True)
    fmt = reader.choice("format", FORMATS, required=True)
    file = reader.relative_file("file")
    labels_file = reader.relative_file("labels")
    labels = reader.labels(labels_file) if labels_file else ()
    size, resize, mean, std = reader.input_section(task)
    output = reader.choice("output", OUTPUTS, default="softmax")
    layout = reader.choice("layout", LAYOUTS, required=task == "detection")
    box_units = reader.choice("box_units", BOX_UNITS, required=task == "detection")
    iou = raw.get("iou_threshold", 0.45)
    if not isinstance(iou, (int, float)) or isinstance(iou, bool) or not 0 < iou <= 1:
        reader.problem("iou_threshold", "must be a number above 0 and at most 1")
        iou = 0.45
    if reader.problems:
        raise SpecError(reader.problems)
    return FolderSpec(name=folder.name, folder=folder, task=task, format=fmt, file=file,
                      labels_file=labels_file, labels=labels, size=size, resize=resize,
                      mean=mean, std=std, output=output or "softmax", layout=layout,
                      box_units=box_units, iou_threshold=float(iou))


def _read_json(folder: Path) -> dict:
    where = spec_location(folder.name)
    try:
        raw = json.loads((folder / SPEC_FILE).read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError([f"{where} does not exist"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError([f"{where} is not valid JSON ({type(exc).__name__} at line "
                         f"{getattr(exc, 'lineno', '?')})"]) from None
    if not isinstance(raw, dict):
        raise SpecError([f"{where} must hold a JSON object"])
    return raw


class _SpecReader:
    """Reads model.json's fields, collecting every problem instead of stopping at the first."""

    def __init__(self, folder: Path, raw: dict):
        self.folder, self.raw = folder, raw
        self.where = spec_location(folder.name)
        self.problems: list[str] = []

    def problem(self, field: str, text: str) -> None:
        self.problems.append(f"{self.where}: '{field}' {text}")

    def choice(self, key, choices, default=None, required=False):
        value = self.raw.get(key, default)
        if value is None:
            if required:
                self.problem(key, f"is required; one of {', '.join(choices)}")
            return None
        if value not in choices:
            self.problem(key, f"is {value!r}; use one of {', '.join(choices)}")
            return None
        return value

    def relative_file(self, key) -> str | None:
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            self.problem(key, "is required: a file name relative to the folder")
            return None
        # Containment is checked on the name (no '..' out of the folder); a symlink placed in
        # the folder by the operator is followed.
        target = Path(os.path.normpath(self.folder / value))
        if Path(os.path.normpath(self.folder)) not in target.parents:
            self.problem(key, "must name a file inside the model's folder")
            return None
        if not target.is_file():
            self.problem(key, f"names {value!r}, which is not in the folder")
            return None
        return value

    def labels(self, labels_file: str) -> tuple[str, ...]:
        try:
            lines = (self.folder / labels_file).read_text("utf-8").splitlines()
        except UnicodeDecodeError:
            self.problem("labels", "must be a UTF-8 text file, one label per line")
            return ()
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            self.problem("labels", "names an empty file")
        return tuple(line.strip() for line in lines)

    def input_section(self, task: str | None):
        """(size, resize, mean, std) from the `input` object."""
        inp = self.raw.get("input", {})
        if not isinstance(inp, dict):
            self.problem("input", "must be an object")
            inp = {}
        for key in sorted(set(inp) - _INPUT_KEYS):
            self.problem(f"input.{key}", f"is not a known field; known fields: {', '.join(sorted(_INPUT_KEYS))}")
        size = inp.get("size")
        if size is not None:
            if (not isinstance(size, list) or len(size) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in size)):
                self.problem("input.size", "must be [height, width], whole numbers from 1 to 4096")
                size = None
            else:
                size = (size[0], size[1])
        resize = inp.get("resize", LETTERBOX if task == "detection" else STRETCH)
        if resize not in RESIZES:
            self.problem("input.resize", f"is {resize!r}; use one of {', '.join(RESIZES)}")
        return size, resize, self._triple(inp, "mean", [0.0, 0.0, 0.0]), self._triple(inp, "std", [1.0, 1.0, 1.0])

    def _triple(self, inp: dict, key: str, default):
        value = inp.get(key, default)
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            self.problem(f"input.{key}", "must be a list of three numbers (R, G, B)")
            return tuple(default)
        if key == "std" and any(v == 0 for v in value):
            self.problem("input.std", "must not contain 0")
        return tuple(float(v) for v in value)
