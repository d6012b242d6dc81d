"""Fetch weight files ahead of time: `python -m models.download [NAME ...|all]`.

With no name it fetches the models the environment enables (IMAGE_CLASSIFICATION_MODEL,
OBJECT_DETECTION_MODEL, when their features are on), else all of them. Files go to MODELS_DIR
and are verified before they are kept. Exits non-zero if any file could not be fetched.
"""
from __future__ import annotations

import argparse
import logging
import sys

from config import ConfigError, Settings
from models.builtins import BUILTINS, CATALOG
from models.weights import WeightsUnavailable, ensure_weights
from registry import TASKS, create_model


def _loads_into_architecture(name: str, settings: Settings):
    """The model family's structural check: the downloaded file must load into its architecture."""
    def check(path):
        from runtimes import frameworks
        options = settings.inference_options
        model = create_model(BUILTINS[name].task, name, settings.models_dir, options=options)
        frameworks.require(set(model.frameworks), options)
        model.build(path)
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.download", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"model names ({', '.join(CATALOG)}) or 'all'")
    parser.add_argument("--no-check", action="store_true",
                        help="skip loading each file into its architecture (checksums still apply)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    names = args.names
    if not names:
        names = [settings.models_for(task)[0] for task in TASKS if settings.models_for(task)] or ["all"]
    packaged = [n for n in names if n in BUILTINS and n not in CATALOG]
    for name in packaged:
        print(f"{name}: its files come with the Python package {BUILTINS[name].weights.requirement} "
              "(requirements.txt): nothing to download")
    names = [n for n in names if n not in packaged]
    if "all" in names:
        names = list(CATALOG)
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(CATALOG)} or all")

    failed = 0
    for name in names:
        spec = CATALOG[name]
        try:
            check = None if args.no_check else _loads_into_architecture(name, settings)
            path = ensure_weights(spec, settings.models_dir, download=True, check=check)
            print(f"{name}: {path}")
        except WeightsUnavailable as exc:
            failed += 1
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
