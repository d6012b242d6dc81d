"""Validate a model folder before deploying it: `python -m models.check MODELS_DIR/<name>`.

Reads model.json with the service's own rules, opens the model, prints its input and output
tensors, and runs one inference on an image (--image, else a generated test pattern) with
the same code the service runs. Exits 1 with every problem listed when the folder is bad.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _test_pattern() -> bytes:
    ys, xs = np.mgrid[0:480, 0:640]
    pixels = np.stack([xs * 255 / 640, ys * 255 / 480, np.full_like(xs, 128.0)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.check", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the model folder, MODELS_DIR/<name>")
    parser.add_argument("--image", type=Path, help="an image to run (default: a test pattern)")
    parser.add_argument("--top", type=int, default=5, help="results to print")
    args = parser.parse_args(argv)

    from dataplane.images import decode_image
    from models.folder_spec import SpecError, load_spec
    from registry import create_model
    from runtimes import frameworks

    try:
        spec = load_spec(args.folder)
        model = create_model(spec.task, spec.name, args.folder.parent)
        frameworks.require(set(model.frameworks))
        model.load()
    except SpecError as exc:
        print("The folder is not valid:\n" + "\n".join(f"  - {p}" for p in exc.problems), file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"The model file could not be opened: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    executor = model.tensors
    print(f"model    {spec.name}: {spec.task}, {spec.format}, {len(spec.labels)} labels")
    print(f"input    {executor.input.name} {list(d or -1 for d in executor.input.shape)} "
          f"{executor.input.dtype.name} {executor.layout}"
          + (f" quantized scale={executor.input.scale:g} zero_point={executor.input.zero_point}"
             if executor.input.quantized else ""))
    for out in executor.outputs:
        print(f"output   {out.name} {list(d or -1 for d in out.shape)} {out.dtype.name}"
              + (f" quantized scale={out.scale:g} zero_point={out.zero_point}" if out.quantized else ""))
    print(f"resize   {spec.resize} to {list(model.input_size)}, (pixel - {list(spec.mean)}) / {list(spec.std)}")

    image = decode_image(args.image.read_bytes() if args.image else _test_pattern()).image
    print(f"image    {args.image or 'test pattern'} ({image.width}x{image.height})")
    if spec.task == "classification":
        probabilities = model.predict([image])[0]
        for i in np.argsort(-probabilities)[: args.top]:
            print(f"  {probabilities[i] * 100:6.2f}%  {spec.labels[i]}")
    else:
        detections = sorted(model.predict([image], 0.25)[0], key=lambda d: -d.score)
        print(f"  {len(detections)} detections at score >= 0.25")
        for d in detections[: args.top]:
            print(f"  {d.score * 100:6.2f}%  {d.label}  {list(d.box)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
