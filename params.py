"""Query parameters, parsed with precise 400s."""
from __future__ import annotations

from flask import request

from errors import InvalidParameter

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def int_arg(name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be a whole number from {minimum} to {maximum}.") from None
    if not minimum <= value <= maximum:
        raise InvalidParameter(f"'{name}' must be from {minimum} to {maximum}.")
    return value


def float_arg(name: str, *, default: float, minimum: float, maximum: float) -> float:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be a number from {minimum:g} to {maximum:g}.") from None
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
