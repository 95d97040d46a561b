"""load_settings: one TOML file, then the environment, then secrets from files, then checks.

Reading is all it does: no file or directory is created or changed.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .errors import ConfigError, Problem
from .schema import (
    SECRET_FILES,
    SENSITIVE_KEYS,
    TABLE_ARRAYS,
    AtKey,
    Settings,
    ShowsValue,
    section_models,
)

ENV_PREFIX = "TICKETD_"
ENV_CONFIG = "TICKETD_CONFIG"  # the file to load
# A *_file value "credential:NAME" is the file NAME in the directory systemd gives a unit
# with LoadCredential=NAME:/path (a private, read-only copy only the service user can read).
CREDENTIAL_PREFIX = "credential:"
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"

Data = dict[str, Any]
Origins = dict[str, str]  # "imap.port" -> where its value was written


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """The checked settings, or ConfigError listing every problem found."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get(ENV_CONFIG)
    source = str(path) if path is not None else "environment"
    data = _read_toml(Path(path)) if path is not None else {}
    origins: Origins = {}
    problems = _refuse_secrets_in_file(data, source)
    problems += _apply_environment(data, environ, origins)
    problems += _read_secret_files(data, source, origins, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        problems += [_problem(e, source, origins) for e in error.errors()]
    if problems:
        raise ConfigError.of(_first_per_key(problems))
    return settings


def _read_toml(path: Path) -> Data:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(str(path), None, f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:  # its message ends "(at line 3, column 7)"
        raise ConfigError(str(path), None, f"not valid TOML: {error}") from None


def _refuse_secrets_in_file(data: Data, source: str) -> list[Problem]:
    return [Problem(source, f"{name}.{key}",
                    f"secrets are not read from the configuration file: use {file_key}" + (
                        f" or the environment variable TICKETD_{name.upper()}__{key.upper()}"
                        if "[" not in name else ""))
            for name, section in _tables(data)
            for file_key, key in SECRET_FILES.items() if key in section]


def _tables(data: Data) -> list[tuple[str, Data]]:
    """Each section, and each entry of an array of tables as "mailboxes[1]"."""
    found = []
    for name, section in data.items():
        if isinstance(section, dict):
            found.append((name, section))
        elif name in TABLE_ARRAYS and isinstance(section, list):
            found += [(f"{name}[{i}]", entry) for i, entry in enumerate(section)
                      if isinstance(entry, dict)]
    return found


def _apply_environment(data: Data, environ: Mapping[str, str], origins: Origins) -> list[Problem]:
    """TICKETD_<SECTION>__<KEY>=value, any case, overrides the file's value of that key."""
    problems = []
    models = section_models()
    for variable in sorted(environ):
        if not _names_a_setting(variable, models):
            continue
        name, _, key = variable[len(ENV_PREFIX):].lower().partition("__")
        origin = f"environment {variable}"
        field = models[name].model_fields.get(key) if name in models else None
        if field is None:
            problems.append(Problem(origin, None, "no such setting: expected TICKETD_<SECTION>"
                                    "__<KEY> naming a key of the configuration file"))
            continue
        value: Any = environ[variable]
        if get_origin(field.annotation) is tuple:  # a list is written as in TOML: ["a", "b"]
            try:
                value = tomllib.loads(f"value = {value}")["value"]
            except tomllib.TOMLDecodeError as error:
                problems.append(Problem(origin, f"{name}.{key}", f"not a TOML array: {error}"))
                continue
        section = data.setdefault(name, {})
        if isinstance(section, dict):  # otherwise validation reports the section itself
            section[key] = value
            origins[f"{name}.{key}"] = origin
    return problems


def _names_a_setting(variable: str, sections: Mapping[str, object]) -> bool:
    """TICKETD_<SECTION>__<KEY>, or a near miss like TICKETD_IMAP_PORT that must be reported.

    Other TICKETD_ variables (TICKETD_CONFIG, the tests' TICKETD_FAILPOINT) are not ours.
    """
    if not variable.upper().startswith(ENV_PREFIX):
        return False
    rest = variable[len(ENV_PREFIX):].lower()
    return "__" in rest or any(rest.startswith(f"{section}_") for section in sections)


def _read_secret_files(data: Data, source: str, origins: Origins,
                       environ: Mapping[str, str]) -> list[Problem]:
    """Put each secret file's content under its key; a secret set in the environment wins."""
    problems = []
    for name, section in _tables(data):
        for file_key, key in SECRET_FILES.items():
            if section.get(file_key) is None or key in section:
                continue
            dotted = f"{name}.{file_key}"
            origin = origins.get(dotted, source)
            value = section[file_key]
            credential = isinstance(value, str) and value.startswith(CREDENTIAL_PREFIX)
            try:
                # systemd's credentials directory is the service's alone, whatever the modes
                # it gives the files (an ACL may show as group bits): only paths are checked.
                section[key] = _read_secret(_secret_path(value, environ), private=not credential)
                origins[f"{name}.{key}"] = origin
            except ValueError as error:
                reason = str(error)
                if origin.startswith("environment") and not credential and \
                        not os.path.exists(str(value)):
                    # Perhaps the secret itself, set in the *_FILE variable by mistake.
                    reason = reason.replace(str(section[file_key]), "the file it names")
                problems.append(Problem(origin, dotted, reason))
    return problems


def _secret_path(value: object, environ: Mapping[str, str]) -> object:
    """The file a *_file value names: "credential:NAME" is looked up in $CREDENTIALS_DIRECTORY,
    anything else is a path as written."""
    if not isinstance(value, str) or not value.startswith(CREDENTIAL_PREFIX):
        return value
    name = value[len(CREDENTIAL_PREFIX):]
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{value}: a credential's name is one file name, as in "
                         f"LoadCredential=NAME:/path")
    directory = environ.get(CREDENTIALS_DIRECTORY)
    if not directory:
        raise ValueError(f"{value}: ${CREDENTIALS_DIRECTORY} is not set; systemd sets it for a "
                         f"unit with LoadCredential={name}:/path, elsewhere set it to the "
                         f"directory holding the file {name}")
    path = os.path.join(directory, name)
    if not os.path.lexists(path):
        raise ValueError(f"{value}: no credential {name} in ${CREDENTIALS_DIRECTORY} ({directory});"
                         f" the unit needs LoadCredential={name}:/path")
    return path


def _read_secret(path: object, *, private: bool = True) -> str:
    if not isinstance(path, str):
        raise ValueError("must be a path (a string)")
    try:
        with open(path, encoding="utf-8") as file:
            if private:
                _private(path, os.fstat(file.fileno()).st_mode)
            text = file.read()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path}: not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")  # the newline editors and echo add
    if not text:
        raise ValueError(f"{path} is empty")
    return text


def _private(path: str, mode: int) -> None:
    """A secret that other accounts on the machine can read is no longer a secret."""
    if mode & 0o044:
        who = "group and others" if mode & 0o004 else "its group"
        raise ValueError(f"{path} is readable by {who} "
                         f"(mode {stat.S_IMODE(mode):04o}): a secret must be readable by the "
                         f"service only; run: chmod 600 {path}")


def _problem(error: ErrorDetails, source: str, origins: Origins) -> Problem:
    """A pydantic error in ticketd's words: where, which key, why."""
    loc = [str(part) for part in error["loc"]]
    complaint = error.get("ctx", {}).get("error")
    if isinstance(complaint, AtKey):
        loc.append(complaint.key)
    parts = [piece for part in loc for piece in part.split(".")]
    key = parts[0] + "".join(f"[{part}]" if part.isdigit() else f".{part}"
                             for part in parts[1:])
    reason = _reason(error)
    origin = origins.get(".".join(loc[:2]), source)
    if _may_echo(error, loc, origin, complaint):
        reason += f" (got {json.dumps(error.get('input'), ensure_ascii=False)[:80]})"
    return Problem(origin, key, reason)


def _may_echo(error: ErrorDetails, loc: list[str], origin: str, complaint: object) -> bool:
    """Whether the refused value may be repeated: only when it cannot be a secret.

    A number, true/false, or a string written in the configuration file under a key known
    not to hold secrets. Never a value from the environment, where secrets are passed and a
    password set in the wrong variable lands; never an unknown key's (a misspelt
    "password") nor a secret's.
    """
    value = error.get("input")
    if isinstance(complaint, ShowsValue | AtKey) or error["type"] == "extra_forbidden":
        return False
    if loc[-1] in SENSITIVE_KEYS or loc[-1] in SECRET_FILES:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and not origin.startswith("environment")


def _reason(error: ErrorDetails) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    context = error.get("ctx", {})
    if kind == "value_error":
        return str(context["error"])
    if kind == "model_type":
        return "must be a table"
    if kind == "literal_error":  # pydantic says "'a', 'b' or 'c'"
        return "must be one of " + str(context["expected"]).replace("'", '"').replace(" or ", ", ")
    return message.replace("Input should be", "must be", 1)


def _first_per_key(problems: list[Problem]) -> list[Problem]:
    """An unreadable password file also leaves the password missing: say it once."""
    seen: set[str] = set()
    kept = []
    for problem in problems:
        if problem.key is None or problem.key not in seen:
            kept.append(problem)
            seen.add(problem.key or "")
    return kept
