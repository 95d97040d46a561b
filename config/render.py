"""The effective settings as TOML, for `ticketd check-config`: secrets never shown."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import PurePath

from pydantic import BaseModel, SecretStr

from .durations import format_duration
from .redact import safe_url
from .schema import SECRET_FILES, TABLE_ARRAYS, Settings, section_models


def render_effective(settings: Settings) -> str:
    """Every section and key with its value in effect; a secret that is set reads "***"."""
    blocks = []
    for name in section_models():
        section = getattr(settings, name)
        if section is None:
            blocks.append(f"# [{name}] is not configured")
        else:
            lines = [f"{key} = {_value(key, value)}" if value is not None else f"# {key} is unset"
                     for key, value in _items(section)]
            blocks.append("\n".join([f"[{name}]", *lines]))
    for name in TABLE_ARRAYS:  # [[brands]], [[mailboxes]]: one block per entry
        for entry in getattr(settings, name):
            lines = [f"{key} = {_value(key, value)}" if value is not None else f"# {key} is unset"
                     for key, value in _items(entry)]
            blocks.append("\n".join([f"[[{name}]]", *lines]))
    return "\n\n".join(blocks) + "\n"


def _items(section: BaseModel) -> list[tuple[str, object]]:
    # A secret that is not set is left out: its *_file key, shown unset, says enough.
    return [(key, value) for key in type(section).model_fields
            if (value := getattr(section, key)) is not None or key not in SECRET_FILES.values()]


def _value(key: str, value: object) -> str:
    if isinstance(value, SecretStr):
        return '"***"'
    if key == "url" and isinstance(value, str):
        value = safe_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, timedelta):
        value = format_duration(value)
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, BaseModel):
        return "{ " + ", ".join(f"{k} = {_value(k, v)}" for k, v in _items(value)
                                if v is not None) + " }"  # TOML has no null: unset is left out
    if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        return "[\n" + "".join(f"    {_value(key, item)},\n" for item in value) + "]"
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(key, item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(str(k), v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot render {key} = {value!r}")
