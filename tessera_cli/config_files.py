"""``tessera config check`` and ``tessera config convert``: a config file's every error, and NVIDIA's
device plugin config rewritten as Tessera's."""

from __future__ import annotations

import argparse
import sys

from tessera.config import ConfigFileError
from tessera.config import ConfigProblem, config_problems, read_config_file

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def _shape_problems(document_data: object, lines) -> list[ConfigProblem]:
    """``extender.typical_shapes`` items the extender's shape grammar refuses (a check beyond the schema's
    types: the grammar is the extender's)."""
    from extender.placement.shapes import ShapeError, parse_shape

    extender = document_data.get("extender") if isinstance(document_data, dict) else None
    shapes = extender.get("typical_shapes") if isinstance(extender, dict) else None
    if not isinstance(shapes, list):
        return []
    problems = []
    for i, text in enumerate(shapes):
        if not isinstance(text, str):
            continue  # the schema reports it
        try:
            parse_shape(text)
        except ShapeError as exc:
            key = f"extender.typical_shapes[{i}]"
            problems.append(ConfigProblem(lines(key), f"{key}: {exc}"))
    return problems


def file_problems(path: str) -> list[ConfigProblem]:
    """Every error in the Tessera config file at ``path``; ConfigFileError where it cannot be read."""
    document = read_config_file(path)
    problems = config_problems(document) + _shape_problems(document.data, document.line_of)
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


def run_check(args: argparse.Namespace) -> int:
    """Print every error of ``args.file`` on stderr as ``FILE:LINE: key: message``; 0 valid, 1 errors,
    2 unreadable."""
    try:
        problems = file_problems(args.file)
    except ConfigFileError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not problems:
        print(f"{args.file}: valid")
        return EXIT_VALID
    for problem in problems:
        where = f"{args.file}:{problem.line}" if problem.line is not None else args.file
        print(f"{where}: {problem.message}", file=sys.stderr)
    print(f"tessera: {args.file}: {len(problems)} error{'s' if len(problems) != 1 else ''}", file=sys.stderr)
    return EXIT_INVALID


def run_convert(args: argparse.Namespace) -> int:
    """Print Tessera's config for NVIDIA's device plugin config ``args.file``; 0 converted, 1 not NVIDIA's
    config, 2 unreadable."""
    from tessera.config.document import read_config_document
    from tessera.config.nvidia import NvidiaConfigError, convert_nvidia_config
    from tessera.yamlfile import YamlFileError

    try:
        document = read_config_document(args.file)
    except YamlFileError as exc:
        print(f"tessera: {args.file}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        conversion = convert_nvidia_config(document.data)
    except NvidiaConfigError as exc:
        print(f"tessera: {args.file}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(conversion.render())
    return EXIT_VALID
