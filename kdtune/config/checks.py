"""Checks of a YAML mapping's keys and value types, with one-line messages (no trial knowledge)."""

from __future__ import annotations

import difflib
from typing import Any

from kdtune.errors import UsageError


def check_keys(mapping: Any, allowed: dict[str, Any], path: str, prefix: str) -> None:
    if not isinstance(mapping, dict):
        raise UsageError(f"{path}: {prefix.rstrip('.') or 'top level'}: expected a mapping, got {mapping!r}")
    for key, value in mapping.items():
        if key not in allowed:
            raise UsageError(f"{path}: {prefix}{key}: unknown key{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")
        if not isinstance(value, allowed[key]) or isinstance(value, bool) and allowed[key] in (int, (int, float)):
            kinds = allowed[key] if isinstance(allowed[key], tuple) else (allowed[key],)
            want = " or ".join(TYPE_WORDS.get(t, t.__name__) for t in kinds)
            raise UsageError(f"{path}: {prefix}{key}: expected {want}, got {value!r}")


TYPE_WORDS = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
              type(None): "null"}


def did_you_mean(key: str, options) -> str:
    close = difflib.get_close_matches(str(key), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
