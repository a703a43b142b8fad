"""Typed dataclass configs <-> command-line flags: field `name` is flag `--name`, one binding for
every job.

    add_config_arguments(parser.add_argument_group("models"), LabelerConfig)
    cfg = config_from_args(LabelerConfig, parser.parse_args())

A field's `metadata` may give the flag's "help", "choices" and "metavar"; its default is the
flag's. `X | None` fields accept "none"; `tuple[X, ...]` fields take any number of values
(metadata "repeat": one value per use of the flag instead) and `tuple[X, X]` exactly two; dicts
take JSON; bools are `--name` / `--no-name`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from typing import TypeVar, get_type_hints

T = TypeVar("T")
CORPUS_SHIFT = ("thing_hues", "upright_tilt")  # the `SyntheticConfig` fields of a shifted corpus


def optional(kind: type):
    """An argparse `type` for `X | None` values: "none" gives None."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = f"{kind.__name__} or none"
    return parse


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_type: type,
                         only: Iterable[str] | None = None) -> None:
    """One flag per field of the dataclass `config_type` (those named in `only`, when given)."""
    hints = get_type_hints(config_type)
    chosen = None if only is None else set(only)
    for f in dataclasses.fields(config_type):
        if chosen is not None and f.name not in chosen:
            continue
        kind, default = hints[f.name], _default(f)
        flag = "--" + f.name.replace("_", "-")
        given = {k: f.metadata[k] for k in ("choices", "metavar") if k in f.metadata}
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        if kind is dict or typing.get_origin(kind) is dict:
            parser.add_argument(flag, type=json.loads, default=default, help=help_text, **given)
            continue
        if typing.get_origin(kind) is tuple and f.metadata.get("repeat"):
            parser.add_argument(flag, action="append", type=typing.get_args(kind)[0], default=[],
                                help=help_text + " (repeatable)", **given)
            continue
        if typing.get_origin(kind) is tuple:
            args = typing.get_args(kind)
            nargs = "*" if args[-1] is Ellipsis else len(args)
            shown = " ".join(map(str, default)) or "none"
            parser.add_argument(flag, nargs=nargs, type=args[0], default=default,
                                help=help_text or f"default: {shown}", **given)
            continue
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = optional(next(a for a in typing.get_args(kind) if a is not type(None)))
        parser.add_argument(flag, type=kind, default=default, help=help_text or f"default: {default}",
                            **given)


def config_from_args(config_type: type[T], args: argparse.Namespace, only: Iterable[str] | None = None,
                     **fields) -> T:
    """A `config_type` of the flags `add_config_arguments` added (with the same `only`) as parsed
    into `args`, then `fields`; fields without a flag keep their defaults."""
    names = [f.name for f in dataclasses.fields(config_type)] if only is None else list(only)
    return config_type(**{**flag_values(args, names), **fields})


def flag_values(args: argparse.Namespace, names: Iterable[str]) -> dict:
    """{name: value} of the flags `names` that `args` holds, lists (several values) as tuples."""
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default
