"""Configuration files: YAML/JSON loading, inheritance, `--set` overrides, path resolution.

Validation against a package's schema is ``shared.schema``; the command line is ``shared.cli``.

Rules (also in docs/training.md):

* A config is a YAML (``.yaml``/``.yml``) or JSON (``.json``) mapping.
* ``base:`` (alias ``inherit:``) names another config file (relative to this file's folder)
  whose values this one overrides, key by key (nested mappings merge, everything else replaces).
  Chains are allowed; cycles are an error.
* ``--set a.b=value`` overrides one key after inheritance; the value is parsed as a YAML scalar
  (``1e-3`` → float, ``true`` → bool, ``null`` → None, ``[1, 2]`` → list, otherwise string).
* Path values: a string whose key is ``path``/``dir``/``file``/``workdir`` or ends in
  ``_path``/``_dir``/``_file``/``_paths``/``_dirs``/``_files`` is a path. Relative paths written
  in a config file are resolved relative to *that file's folder*; relative paths given with
  ``--set`` are resolved relative to the current directory (like any other command-line path).
  ``{out}`` inside any string is replaced by the absolute ``--out`` folder, ``{config_dir}`` by
  the folder of the top-level config; ``~`` and ``$VARS`` are expanded.
* Errors raise :class:`ConfigError`, naming the file and the dotted key.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from shared.errors import ConfigError
from shared.io import atomic_write_text

BASE_KEYS = ("base", "inherit")
_PATH_NAMES = {"path", "dir", "file", "workdir"}
_PATH_SUFFIXES = ("_path", "_dir", "_file", "_paths", "_dirs", "_files")
_MISSING = object()


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3``/``5E4`` as floats (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str):
    """Parse YAML with :class:`_Loader` (safe, with exponent floats)."""
    return yaml.load(text, Loader=_Loader)


class Config(dict):
    """A nested ``dict`` that remembers the file it came from (for error messages)."""

    def __init__(self, data=(), source=None):
        super().__init__(data)
        self.source = str(source) if source else None

    def __deepcopy__(self, memo):
        return Config(copy.deepcopy(dict(self), memo), self.source)

    def get_key(self, dotted: str, default=_MISSING):
        """Value at ``a.b.c``; ``default`` if absent, else ConfigError."""
        node: Any = self
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is _MISSING:
                    raise ConfigError(self.source, dotted, "is required but missing")
                return default
            node = node[part]
        return node

    def section(self, dotted: str) -> "Config":
        """The sub-mapping at ``dotted`` as a Config (same source), ``{}`` if absent."""
        value = self.get_key(dotted, {})
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(self.source, dotted, f"must be a mapping, got {type(value).__name__}")
        return Config(value, self.source)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)


def is_path_key(key: str) -> bool:
    key = str(key)
    return key in _PATH_NAMES or key.endswith(_PATH_SUFFIXES)


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(path, None, "config file not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, None, f"cannot parse: {exc.problem or exc.context}{where}") from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(path, None, f"cannot parse: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"top level must be a mapping, got {type(data).__name__}")
    return data


def _expand(value: str, base_dir: Path | None, is_path: bool, subst: Mapping[str, str],
            source, key) -> str:
    for name, repl in subst.items():
        token = "{" + name + "}"
        if token in value:
            if repl is None:
                raise ConfigError(source, key, f"uses {token} but no --{name} was given")
            value = value.replace(token, str(repl))
    value = os.path.expandvars(os.path.expanduser(value))
    if is_path and base_dir is not None and value and not os.path.isabs(value):
        value = os.path.normpath(str(base_dir / value))
    return value


def _resolve(node, base_dir, subst, source, prefix="", path_ctx=False):
    """Expand placeholders and make relative paths absolute, recursively."""
    if isinstance(node, dict):
        return {k: _resolve(v, base_dir, subst, source, f"{prefix}.{k}" if prefix else str(k),
                            is_path_key(k))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, base_dir, subst, source, f"{prefix}[{i}]", path_ctx)
                for i, v in enumerate(node)]
    if isinstance(node, str):
        return _expand(node, base_dir, path_ctx, subst, source, prefix)
    return node


def deep_merge(base: Mapping, over: Mapping) -> dict:
    """Recursive merge: mappings merge key by key, other values from ``over`` replace."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_file(path: Path, subst, chain: tuple) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(path, "base", "inheritance cycle: " + " -> ".join(map(str, chain + (path,))))
    data = _read_mapping(path)
    bases = [k for k in BASE_KEYS if k in data]
    if len(bases) > 1:
        raise ConfigError(path, bases[1], f"use only one of {BASE_KEYS}")
    base_ref = data.pop(bases[0]) if bases else None
    data = _resolve(data, path.parent, subst, path)
    if base_ref is None:
        return data
    if not isinstance(base_ref, str) or not base_ref:
        raise ConfigError(path, bases[0], "must be a file name")
    base_path = Path(os.path.expandvars(os.path.expanduser(base_ref)))
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    if not base_path.is_file():
        raise ConfigError(path, bases[0], f"base config {base_path} not found")
    return deep_merge(_load_file(base_path, subst, chain + (path,)), data)


def parse_override(text: str, source="--set") -> tuple[str, Any]:
    """``'a.b=1e-3'`` → ``('a.b', 0.001)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(source, text, "override must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(source, text, "empty key in override")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_key(cfg: dict, dotted: str, value, source="--set") -> None:
    """Set ``a.b.c`` in a nested dict, creating intermediate mappings."""
    node = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(source, ".".join(parts[: i + 1]),
                              f"is a {type(child).__name__}, cannot set '{dotted}' inside it")
        node = child
    node[parts[-1]] = value


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (),
                out: str | os.PathLike | None = None) -> Config:
    """Load a config file with inheritance, apply ``--set`` overrides, resolve paths.

    ``out`` (the ``--out`` folder) fills ``{out}`` placeholders; it is not created here.
    """
    path = Path(os.path.expanduser(str(path))).resolve()
    subst = {"out": str(Path(out).resolve()) if out is not None else None,
             "config_dir": str(path.parent)}
    data = _load_file(path, subst, ())
    cwd = Path.cwd()
    for text in overrides or ():
        key, value = parse_override(text, source=f"{path} (--set {text})")
        leaf = key.split(".")[-1]
        value = _resolve(value, cwd, subst, f"--set {text}", key, is_path_key(leaf))
        set_key(data, key, value, source=f"{path} (--set {text})")
    return Config(data, path)


def save_config(cfg: Mapping, path: str | os.PathLike) -> None:
    """Write a config as YAML atomically (temp file + os.replace)."""
    atomic_write_text(path, yaml.safe_dump(_plain(cfg), sort_keys=False))


def _plain(node):
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    if hasattr(node, "item") and callable(node.item):  # NumPy scalars
        return node.item()
    return node


__all__ = ["Config", "ConfigError", "load_config", "save_config", "deep_merge", "parse_override",
           "set_key", "is_path_key", "yaml_load"]
