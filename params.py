"""Query parameters, parsed with precise 400s."""
from __future__ import annotations

from flask import request

from errors import InvalidParameter

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def int_arg(name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    return _number_arg(name, int, "a whole number", default, minimum, maximum)


def float_arg(name: str, *, default: float, minimum: float, maximum: float) -> float:
    return _number_arg(name, float, "a number", default, minimum, maximum)


def _number_arg(name, cast, kind: str, default, minimum, maximum):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be {kind} from {minimum:g} to {maximum:g}.") from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise InvalidParameter(f"'{name}' must be from {minimum:g} to {maximum:g}.")
    return value


def bool_arg(name: str, *, default: bool = False) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidParameter(f"'{name}' must be true or false.")


def list_arg(name: str) -> frozenset[str] | None:
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())
