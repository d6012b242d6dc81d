"""Convert built-in models for OpenVINO ahead of time: `python -m models.convert [NAME ...|all]`.

Fills MODELS_DIR/.openvino with each model's converted network, checked against its framework
(weights fetched first where missing and allowed), so a serving-only install (no TensorFlow,
no torch: requirements-serving.txt, the slim image) or an offline replica serves it from its
first start. With no name it converts the models the environment enables, else all of them.
Needs the full install (requirements.txt). Exits non-zero if any model could not be converted.
"""
from __future__ import annotations

import argparse
import logging
import sys

from config import ConfigError, Settings
from contract import OPENVINO
from models.builtin_model import BuiltinModel
from models.builtins import BUILTINS
from registry import TASKS, create_model
from runtimes import frameworks


def convert(model) -> tuple[str, str | None]:
    """Load `model` on OpenVINO (its frameworks imported: `main`), a conversion where the cache
    has no valid entry; the runtime it ended on, and why not OpenVINO when it did not."""
    model.load()
    return model.runtime, model.describe().get("runtime_reason")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.convert", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"model names ({', '.join(BUILTINS)}) or 'all'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.inference_runtime != OPENVINO:
        parser.error("INFERENCE_RUNTIME is not openvino: nothing to convert")
    names = args.names or [name for task in TASKS for name in settings.models_for(task)
                           if name in BUILTINS] or ["all"]
    names = list(BUILTINS) if "all" in names else names
    unknown = [name for name in names if name not in BUILTINS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BUILTINS)} or all")
    options = settings.inference_options
    models = {name: create_model(BUILTINS[name].task, name, settings.models_dir, settings.model_download, options)
              for name in names}
    # Every framework the models need, imported at once: torch's stack must come before TensorFlow
    # in a process (frameworks.require orders one call; a later call cannot undo an earlier one's).
    frameworks.require({framework for model in models.values() for framework in model.frameworks}, options)
    failed = 0
    for name, model in models.items():
        if not isinstance(model, BuiltinModel):
            print(f"{name}: nothing to convert (it runs its own files: {model.describe().get('runtime', 'its library')})")
            continue
        try:
            runtime, reason = convert(model)
        except Exception as exc:  # one model's failure does not stop the others
            failed += 1
            print(f"{name}: FAILED: {getattr(exc, 'reason', type(exc).__name__)}", file=sys.stderr)
            continue
        print(f"{name}: {runtime}" + (f" ({reason})" if reason else ""))
        failed += runtime != OPENVINO
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
