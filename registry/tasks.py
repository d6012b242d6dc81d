"""The table of tasks, each task's facts written once: its variables, its built-in models
(derived from models/builtins.py, the default first) and what makes a user's model folder of
that task. Configuration, the app factory, readiness, the routes and the errors read it; a new
task is a contract class, a row here and its rows in models/builtins.py.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from contract import CLASSIFICATION, DETECTION, FACE, InferenceOptions, Model
from models.builtins import BUILTINS, builtins_of
from models.folder_spec import SpecError, load_spec


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    enable_variable: str
    model_variable: str
    folder_factory: str | None      # "module:Class", Class(spec, options), for MODELS_DIR/<name>/ folders; None: built-ins only
    enable_alias: str | None = None

    @property
    def builtins(self) -> tuple[str, ...]:
        """The task's built-in models (models/builtins.py); the first is its default."""
        return builtins_of(self.name)

    @property
    def default_model(self) -> str:
        return self.builtins[0]

    @property
    def disabled_message(self) -> str:
        return (f"{self.name.capitalize()} is disabled on this service; it is enabled with "
                f"{self.enable_variable}=true.")


TASKS: dict[str, Task] = {t.name: t for t in (
    Task(CLASSIFICATION, "IMAGE_CLASSIFICATION_ENABLED", "IMAGE_CLASSIFICATION_MODEL",
         "classifiers.folder:FolderClassifier", enable_alias="IMAGE_CLASSIFICATION"),
    Task(DETECTION, "OBJECT_DETECTION_ENABLED", "OBJECT_DETECTION_MODEL", "detectors.folder:FolderDetector"),
    Task(FACE, "FACE_ENABLED", "FACE_MODEL", None),
)}


def resolve(reference: str):
    """The object a "module:attribute" reference names (imported when first needed)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def create_model(task: str, name: str, models_dir: Path, download: bool = True,
                 options: InferenceOptions = InferenceOptions(),
                 allow_hosts: frozenset[str] = frozenset()) -> Model:
    """A model instance, not loaded: a built-in by name, else the user's folder MODELS_DIR/<name>
    (`allow_hosts`, FETCH_ALLOW_HOSTS: remote engine hosts the address policy lets through)."""
    entry = TASKS[task]
    builtin = BUILTINS.get(name)
    if builtin is not None and builtin.task == task:
        return resolve(builtin.family)(builtin, Path(models_dir), download, options)
    if entry.folder_factory is None:
        raise SpecError([f"MODELS_DIR/{name}: {entry.model_variable} takes a built-in model "
                         f"({', '.join(entry.builtins)}); model folders are not supported for {task} yet"])
    spec = load_spec(Path(models_dir) / name, allow_hosts)
    if spec.task != task:
        raise SpecError([f"{spec.where}: 'task' is {spec.task!r}, but the model is configured "
                         f"in {entry.model_variable}"])
    return resolve(entry.folder_factory)(spec, options)
