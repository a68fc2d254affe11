"""Reading configuration files a patch can write (pyproject.toml, setup.cfg, tox.ini, pytest.ini...), totally.

A patched configuration file is hostile input: every reader of one in the scoring core goes through here, and
every failure (too large, not UTF-8, not TOML or INI, nested past the parser's recursion limit, a value of the
wrong type) is one exception, ConfigError, with a message fit for a rationale step. Nothing else escapes.

INI files are read twice: with iniconfig, the parser pytest itself uses (so "which pytest sections does this file
have" gets pytest's answer), and with configparser, the way pylint and setuptools read them. A file one of them
refuses is unreadable. Pure: no Django, no subprocess.
"""

from __future__ import annotations

import configparser
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import iniconfig

#: Larger than any honest configuration file (a diff is at most 1 MB); reading more would only cost time.
MAX_CONFIG_BYTES = 2 << 20


class ConfigError(ValueError):
    """A configuration file cannot be read the way the tools that use it read it. The message says why."""


def read_text(path: Path, *, encoding: str = "utf-8") -> str | None:
    """The text of the configuration file at `path`; None when there is no regular file there.

    Raises ConfigError when it is larger than MAX_CONFIG_BYTES, cannot be read, holds NUL bytes or is not valid
    `encoding` (pytest reads its files as UTF-8 and fails on anything else).
    """
    try:
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"is larger than {MAX_CONFIG_BYTES} bytes")
    if b"\0" in data:  # no honest text file holds one; parsers disagree on what it means
        raise ConfigError("contains NUL bytes")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not valid {encoding} (byte {exc.start})") from None


def load_toml(text: str) -> dict[str, Any]:
    """The TOML document in `text`, or ConfigError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError("is not valid TOML (nested too deeply)") from None


def table(document: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """The table at `keys` in a TOML document ({} when absent), or ConfigError when something on the way is not
    a table (`[tool] pytest = 5`): the tool reading it would fail, so nothing it says can be trusted."""
    current = document
    for depth, key in enumerate(keys):
        value = current.get(key, {})
        if not isinstance(value, dict):
            dotted = ".".join(keys[: depth + 1])
            raise ConfigError(f"has a {type(value).__name__} where the table [{dotted}] belongs")
        current = value
    return current


def pytest_ini_sections(text: str, *, path: str = "<config>") -> dict[str, dict[str, str]]:
    """Every section of an INI file as pytest's own parser (iniconfig) reads it, or ConfigError."""
    try:
        parsed = iniconfig.IniConfig(path, data=text)
    except iniconfig.ParseError as exc:
        raise ConfigError(f"is not an INI file pytest can read (line {exc.lineno + 1}: {exc.msg})") from None
    return {name: dict(section) for name, section in parsed.sections.items()}


def configparser_sections(text: str, *, inline_comments: bool = False) -> dict[str, dict[str, str]]:
    """Every section of an INI file as configparser reads it (pylint, setuptools), or ConfigError.

    `inline_comments` strips `#` and `;` comments after values, as pylint does.
    """
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=("#", ";") if inline_comments else None
    )
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ConfigError(f"is not an INI file ({exc.message.splitlines()[0]})") from None
    return {section: dict(parser.items(section, raw=True)) for section in parser.sections()}
