"""One YAML loader for every file medistill reads: pipelines, audit policies, FHIR mappings.

``yaml.safe_load`` with three changes, so that a typo cannot silently change a privacy
setting:

* a key repeated in one mapping is refused (PyYAML keeps the last value), naming the line
  and column of both occurrences;
* numbers in exponent form without a dot (``1e-6``, ``5e3``) are read as numbers, as in
  YAML 1.2 (PyYAML, following YAML 1.1, reads them as strings);
* every error is a :class:`~medistill.errors.ConfigError` naming the file, line and column.

It also holds the helpers the three loaders share for reporting validation errors: a
"did you mean" suggestion and a readable field path.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import ConfigError

_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)
    |[-+]?[0-9][0-9_]*\.[0-9_]*)$""", re.X)


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys and reads ``1e-6`` as a float."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = first.get(key)
        except TypeError:           # an unhashable key: construct_mapping reports it
            continue
        if earlier is not None:
            raise yaml.constructor.ConstructorError(
                f"the key {str(key)!r} first given at line {earlier.line + 1}", earlier,
                f"duplicate key {str(key)!r}; a repeated key would silently replace the "
                "first value", key_node.start_mark)
        first[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                _construct_mapping)
# Replace YAML 1.1's float pattern (which needs a dot before an exponent) with YAML 1.2's.
UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12,
                                      list("-+0123456789."))


def parse_yaml(text: str, *, source: str) -> Any:
    """Parse YAML ``text``; ``source`` names it in errors ("p.yaml", "Audit policy p.yaml")."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or "invalid YAML"
        if problem.startswith("duplicate key"):
            raise ConfigError(f"{source}{where}: {problem} ({exc.context}).",
                              hint="Keep one of them.") from None
        raise ConfigError(f"{source}{where}: YAML syntax error: {problem}.",
                          hint="Check indentation, brackets and quotes, and that every "
                               "'key: value' pair has a space after the colon.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML syntax error: {exc}.") from None


def load_yaml(path: Path | str, *, what: str = "YAML file", source: str | None = None) -> Any:
    """Read and parse the YAML file at ``path``; ``what`` names the kind of file in errors
    about reading it, ``source`` (default: the path) prefixes errors about its content."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder; expected a YAML file.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} '{path}' does not exist.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not UTF-8 text.") from None
    except OSError as exc:
        raise ConfigError(f"{what} '{path}' cannot be read: {exc.strerror or exc}.") from None
    return parse_yaml(text, source=source or str(path))


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The valid key closest to ``word``: a permutation of its letters first, then the
    closest by :func:`difflib.get_close_matches`; ``None`` when nothing is close."""
    choices = [str(c) for c in choices]
    same_letters = [c for c in choices if sorted(c) == sorted(str(word))]
    if same_letters:
        return same_letters[0]
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=cutoff)
    return close[0] if close else None


def field_path(loc: Iterable[Any], data: Any = None) -> str:
    """A pydantic error location as a path, ``observations[1] (glucose).unit``; list items
    that have a ``name`` in ``data`` (the parsed document) are labelled with it."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list | tuple) and part < len(node) else None
            if isinstance(node, Mapping) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, Mapping) else None
    return out


__all__ = ["UniqueKeyLoader", "did_you_mean", "field_path", "load_yaml", "parse_yaml"]
