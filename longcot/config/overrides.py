"""Command-line (and study) override strings checked against the schema before Hydra composes them.

Hydra rejects ``rl.max_step=2`` with a multi-line message that suggests appending it with ``+``,
and accepts ``+benchmark.limt=5`` silently. :func:`check_overrides` parses each override with
Hydra's own parser and walks the typed schema (:class:`longcot.config.schema.LongcotConfig`), so
every form -- ``key=v``, ``+key=v``, ``++key=v``, ``~key``, ``group=option``, sweeps ``a=1,2`` --
fails with one line naming the key, what is valid and the close matches (exit 2 in the CLI).
Values are checked for their type here (``benchmark.limit=abc``); value rules (ranges, options)
are the fields' own, applied after composition by :func:`longcot.config.validate.validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from longcot.config.validate import ConfigError

# groups selected with group=option that are not fields of the root schema
EXTRA_GROUPS = ("experiment",)
# fields of these types accept any key below them (free-form mappings owned by their readers)
_OPEN = (dict, typing.Any)


def did_you_mean(word: str, valid: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(valid), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside ``Optional[...]``, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Any), True
    return hint, False


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
            dict: "a mapping"}.get(origin, str(hint))


def _value_fits(hint: Any, value: Any) -> bool:
    hint, optional = _unwrap(hint)
    if value is None:
        return optional
    if isinstance(value, str) and value.startswith("${"):
        return True  # an interpolation: resolved later
    origin = typing.get_origin(hint) or hint
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is bool:
        return isinstance(value, bool)
    if origin is str:
        return not isinstance(value, (list, dict))
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return True


def _groups() -> list[str]:
    from longcot.config.loading import CONF_DIR

    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def _check_group(group: str, values: list[Any], search: Sequence[Path]) -> None:
    from longcot.config.loading import group_options

    options = sorted({*group_options(group), *(p.stem for d in search for p in (d / group).glob("*.yaml"))})
    for v in values:
        if str(v) not in options:
            raise ConfigError(f"{group}={v}: no such {group} option{did_you_mean(str(v), options)} "
                              f"(valid: {', '.join(options)})")


def _check_key(key: str, values: list[Any], *, delete: bool) -> None:
    from longcot.config.schema import LongcotConfig

    cls: Any = LongcotConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = _hints(cls)
        if part not in hints:
            where = ".".join(parts[:i])
            name = f"{where}.{part}" if where else part
            if not where:
                valid = [*hints, *EXTRA_GROUPS]
                raise ConfigError(f"{name}: no such key or group{did_you_mean(part, valid)}")
            raise ConfigError(f"{name}: no such key in {cls.__name__}{did_you_mean(part, list(hints), where + '.')}")
        hint, _ = _unwrap(hints[part])
        origin = typing.get_origin(hint) or hint
        if dataclasses.is_dataclass(origin):
            cls = origin
            continue
        if origin in _OPEN or i == len(parts) - 1:
            if i == len(parts) - 1 and not delete:
                for v in values:
                    if not _value_fits(hints[part], v):
                        raise ConfigError(f"{key}={v!r}: must be {_type_name(hint)}")
            return
        raise ConfigError(f"{key}: {'.'.join(parts[:i + 1])} is {_type_name(hint)}, it has no key {parts[i + 1]!r}")
    # the key names a whole typed node (e.g. ``sft={...}``): Hydra checks its content


def check_overrides(overrides: Sequence[str], where: Optional[str] = None) -> None:
    """Raise :class:`ConfigError` (one line: the override, what is wrong, close matches) for the first
    override of ``overrides`` that names no key or option of the schema, or gives a key a value of the
    wrong type. ``where`` says where the overrides come from (default: the command line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.append((text, parser.parse_override(text)))
        except HydraException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{where + ': ' if where else ''}{text}: cannot parse this override ({first}); the form "
                              "is KEY=VALUE, +KEY=VALUE (add), ~KEY (delete), GROUP=OPTION") from None
    # config directories added with hydra.searchpath=[file://DIR]: their group options count too
    search = [Path(str(d).removeprefix("file://")) for _, o in parsed if o.key_or_group == "hydra.searchpath"
              for d in (o.value() or []) if str(d).startswith("file://")]
    groups = _groups()
    origin = f"{where}: " if where else ""
    for text, override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.package:
            continue  # Hydra's own settings (hydra/launcher=..., hydra.run.dir=...)
        value = override.value()
        if override.is_sweep_override():
            values = list(value.list) if isinstance(value, ChoiceSweep) else []
        else:
            values = [value]
        try:
            if "." not in key and key in (*groups, *EXTRA_GROUPS) and not isinstance(value, dict):
                if not override.is_delete():
                    _check_group(key, values, search)
                continue
            _check_key(key, values, delete=override.is_delete())
        except ConfigError as exc:
            raise ConfigError(f"{origin}{exc}") from None
