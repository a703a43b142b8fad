"""Typed dataclass configs <-> command-line flags (`field_name` <-> `--field-name`)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import TypeVar, get_type_hints

from samcp.data.synthetic import SyntheticConfig

T = TypeVar("T")


def optional(kind: type):
    """An argparse `type` for `X | None` values: "none" gives None."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = f"{kind.__name__} or none"
    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags that pick a `samcp.Labeler`'s models (`--vocab`, `--sam-model`, `--sam-checkpoint`,
    `--samcp-checkpoint`, `--clip-model`, `--clip-checkpoint`), as a group that callers may extend."""
    models = parser.add_argument_group("models")
    models.add_argument("--vocab", default="builtin:synthetic", help="vocabulary YAML path or builtin:NAME")
    models.add_argument("--sam-model", default="tiny", help="vit_h, vit_l, vit_b, tiny or tiny8")
    models.add_argument("--sam-checkpoint", default="shipped", type=optional(str),
                        help="path/URI, 'shipped' (tiny, tiny8) or 'none' (random weights: speed tests)")
    models.add_argument("--samcp-checkpoint", default="shipped", type=optional(str),
                        help="SAM-CP head path/URI, 'shipped' or 'none' (random weights: speed tests)")
    models.add_argument("--clip-model", default="samcp-clip-tiny", help="open_clip architecture")
    models.add_argument("--clip-checkpoint", default="shipped", type=optional(str),
                        help="open_clip weights path/URI, 'shipped' (samcp-clip-tiny trained here; "
                             "the default) or 'none' (fixed-seed random weights)")
    return models


def model_arguments(args: argparse.Namespace) -> dict:
    """The `samcp.Labeler` keyword arguments of the flags of `add_model_arguments`."""
    return {"sam_model": args.sam_model, "sam_checkpoint": args.sam_checkpoint,
            "head_checkpoint": args.samcp_checkpoint, "vocab": args.vocab,
            "clip_model": args.clip_model, "clip_checkpoint": args.clip_checkpoint}


def add_corpus_shift_arguments(parser: argparse.ArgumentParser) -> None:
    """`--thing-hues` and `--upright-tilt`: the synthetic corpus's colour and rotation shifts
    (`SyntheticConfig.thing_hues`, `SyntheticConfig.upright_tilt`)."""
    parser.add_argument("--thing-hues", nargs=2, type=float, default=SyntheticConfig.thing_hues,
                        metavar=("LOW", "HIGH"),
                        help="hue interval of thing colours in [0, 1], e.g. 0 0.5: a colour-shifted corpus")
    parser.add_argument("--upright-tilt", type=float, default=SyntheticConfig.upright_tilt,
                        help="largest rotation (radians) of the upright thing classes (all but ball, "
                             "kite, star); 3.14159: any angle, a rotation-shifted corpus")


def corpus_shift(args: argparse.Namespace) -> dict:
    """The `SyntheticConfig` fields of the flags of `add_corpus_shift_arguments`."""
    return {"thing_hues": tuple(args.thing_hues), "upright_tilt": args.upright_tilt}


def add_config_arguments(parser: argparse.ArgumentParser, config_type: type) -> None:
    """One flag per field of the dataclass `config_type`, defaulting to the field's default.
    `X | None` fields accept "none"; `tuple[X, ...]` fields take one or more values."""
    hints = get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        kind = hints[field.name]
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
            continue
        if typing.get_origin(kind) is tuple:
            parser.add_argument(flag, nargs="*", type=typing.get_args(kind)[0], default=field.default,
                                help=f"default: {' '.join(map(str, field.default)) or 'none'}")
            continue
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = optional(next(a for a in typing.get_args(kind) if a is not type(None)))
        parser.add_argument(flag, type=kind, default=field.default, help=f"default: {field.default}")


def config_from_args(config_type: type[T], args: argparse.Namespace) -> T:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_type)}
    return config_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
