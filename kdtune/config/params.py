"""A trial's config back from its MLflow params (strings, as `kdtune.tracking` logs them).

`values_from_params` parses each trial field's string by the field's type; `make_trial` on the
result gives the TrialConfig the run ran (its config hash matches the run's `kdtune.config_hash`
tag as long as the params were logged whole). `fixed_block` writes a config as a `fixed:` block
for a sweep file: every field that differs from its default.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import yaml

from kdtune.config.trial import LANGUAGE_LISTS, LEGACY_DEFAULTS, TRIAL_FIELDS, TrialConfig, field_type, make_trial
from kdtune.errors import UsageError


def param_text(value: Any) -> str:
    """A value as an MLflow param string (lists and dicts as JSON, the rest as `str`), uncut."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@functools.cache
def default_params() -> dict[str, str]:
    """What a run that lacks a field's param ran with, as a run logs it: the field's default (a
    field is only added with a default that keeps the old behaviour and the old config hash), or
    its legacy default where the default changed later (`LEGACY_DEFAULTS`: `metric`)."""
    return {k: param_text(v) for k, v in make_trial(LEGACY_DEFAULTS).to_dict().items()}


def parse_param(key: str, text: str) -> Any:
    kind, optional = field_type(key)
    if text == "None" and optional:
        return None
    if text.startswith("[") and (kind == "tuple" or key == "layer_map"):
        return json.loads(text)
    if kind == "bool":
        return {"True": True, "False": False}[text]
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def values_from_params(params: dict[str, str], where: str = "run") -> dict[str, Any]:
    """Typed trial values from a run's params (other params, such as student_layers, are ignored).
    A field the run did not log takes its legacy default where one exists (the run predates the
    param and ran with it), else it is left to the current default."""
    out = {k: v for k, v in LEGACY_DEFAULTS.items() if k not in params}
    for key in TRIAL_FIELDS:
        if key in params:
            try:
                out[key] = parse_param(key, params[key])
            except (ValueError, KeyError):
                raise UsageError(f"{where}: param {key}={params[key]!r} is not a {TRIAL_FIELDS[key].type}") from None
    return out


def fixed_block(trial: TrialConfig) -> str:
    """`fixed:` YAML of every field that differs from its default (floats written exactly)."""
    default = make_trial({}).to_dict()
    changed = {k: _as_written(k, v) for k, v in trial.to_dict().items() if v != default[k]}
    return yaml.safe_dump({"fixed": changed}, sort_keys=False, default_flow_style=False, width=100)


def _as_written(key: str, value: Any) -> Any:
    """A value as a sweep author writes it (`make_trial` coerces it back to the same config): a
    language list as a YAML list, not the comma string kdtune keeps; a whole float as `1`."""
    if key in LANGUAGE_LISTS and isinstance(value, str) and "," in value:
        return value.split(",")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
