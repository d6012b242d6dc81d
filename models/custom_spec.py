"""`MODELS_DIR/<name>/model.json`: a user's own model, validated field by field.

Every problem names the folder and the field, so a bad folder is fixed in one pass.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

TASKS = ("classification", "detection")
FORMATS = ("keras", "tflite", "onnx")
RESIZES = ("stretch", "letterbox")
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
class CustomModelSpec:
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

    def describe(self) -> dict:
        info = {"task": self.task, "format": self.format, "file": self.file, "labels": self.labels_file,
                "input": {"size": list(self.size) if self.size else None, "resize": self.resize,
                          "mean": list(self.mean), "std": list(self.std)}}
        if self.task == "classification":
            info["output"] = self.output
        else:
            info.update(layout=self.layout, box_units=self.box_units, iou_threshold=self.iou_threshold)
        return info


def load_spec(folder: Path) -> CustomModelSpec:
    folder = Path(folder)
    name = folder.name
    where = f"MODELS_DIR/{name}/model.json"
    problems: list[str] = []

    def problem(field: str, text: str):
        problems.append(f"{where}: '{field}' {text}")

    try:
        raw = json.loads((folder / "model.json").read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError([f"{where} does not exist"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError([f"{where} is not valid JSON ({type(exc).__name__} at line "
                         f"{getattr(exc, 'lineno', '?')})"]) from None
    if not isinstance(raw, dict):
        raise SpecError([f"{where} must hold a JSON object"])

    for key in sorted(set(raw) - _KEYS):
        problem(key, f"is not a known field; known fields: {', '.join(sorted(_KEYS))}")

    def choice(key, choices, default=None, required=False):
        value = raw.get(key, default)
        if value is None:
            if required:
                problem(key, f"is required; one of {', '.join(choices)}")
            return None
        if value not in choices:
            problem(key, f"is {value!r}; use one of {', '.join(choices)}")
            return None
        return value

    task = choice("task", TASKS, required=True)
    fmt = choice("format", FORMATS, required=True)

    def relative_file(key) -> str | None:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            problem(key, "is required: a file name relative to the folder")
            return None
        # Containment is checked on the name (no '..' out of the folder); a symlink placed in
        # the folder by the operator is followed.
        target = Path(os.path.normpath(folder / value))
        if Path(os.path.normpath(folder)) not in target.parents:
            problem(key, "must name a file inside the model's folder")
            return None
        if not target.is_file():
            problem(key, f"names {value!r}, which is not in the folder")
            return None
        return value

    file = relative_file("file")
    labels_file = relative_file("labels")
    labels: tuple[str, ...] = ()
    if labels_file:
        try:
            lines = (folder / labels_file).read_text("utf-8").splitlines()
            while lines and not lines[-1].strip():
                lines.pop()
            labels = tuple(line.strip() for line in lines)
            if not labels:
                problem("labels", "names an empty file")
        except UnicodeDecodeError:
            problem("labels", "must be a UTF-8 text file, one label per line")

    inp = raw.get("input", {})
    if not isinstance(inp, dict):
        problem("input", "must be an object")
        inp = {}
    for key in sorted(set(inp) - _INPUT_KEYS):
        problem(f"input.{key}", f"is not a known field; known fields: {', '.join(sorted(_INPUT_KEYS))}")
    size = inp.get("size")
    if size is not None:
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in size)):
            problem("input.size", "must be [height, width], whole numbers from 1 to 4096")
            size = None
        else:
            size = (size[0], size[1])
    resize = inp.get("resize", "letterbox" if task == "detection" else "stretch")
    if resize not in RESIZES:
        problem("input.resize", f"is {resize!r}; use one of {', '.join(RESIZES)}")

    def triple(key, default):
        value = inp.get(key, default)
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            problem(f"input.{key}", "must be a list of three numbers (R, G, B)")
            return tuple(default)
        if key == "std" and any(v == 0 for v in value):
            problem("input.std", "must not contain 0")
        return tuple(float(v) for v in value)

    mean = triple("mean", [0.0, 0.0, 0.0])
    std = triple("std", [1.0, 1.0, 1.0])
    output = choice("output", OUTPUTS, default="softmax")
    layout = choice("layout", LAYOUTS, required=task == "detection")
    box_units = choice("box_units", BOX_UNITS, required=task == "detection")
    iou = raw.get("iou_threshold", 0.45)
    if not isinstance(iou, (int, float)) or isinstance(iou, bool) or not 0 < iou <= 1:
        problem("iou_threshold", "must be a number above 0 and at most 1")
        iou = 0.45

    if problems:
        raise SpecError(problems)
    return CustomModelSpec(name=name, folder=folder, task=task, format=fmt, file=file,
                           labels_file=labels_file, labels=labels, size=size, resize=resize,
                           mean=mean, std=std, output=output or "softmax", layout=layout,
                           box_units=box_units, iou_threshold=float(iou))
