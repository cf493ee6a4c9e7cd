"""Config schemas: every known key of a config section, its type and its default.

A package declares its config as a :class:`Section` tree; :func:`validate` checks a loaded
config against it *before any data or TensorFlow work*: an unknown key (a typo such as
``data.n_trian``) or a value of the wrong type is one :class:`~shared.errors.ConfigError` naming
the config file and the dotted key. Missing keys get their documented defaults, so the saved
``config.resolved.yaml`` shows every setting a run used.

    SCHEMA = Section({
        "seed": Int(default=0),
        "data": Section({"num_particles": Int(min=1), "source": Choice("embedded", "files")}),
        "training": Open(),               # validated elsewhere (e.g. shared.training)
    })
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from shared.errors import ConfigError

REQUIRED = object()   # default marker: the key must be given


class Field:
    """One value. ``default=REQUIRED`` makes the key mandatory; ``nullable`` allows ``null``."""

    def __init__(self, default=None, nullable=None, doc=""):
        self.default = default
        self.nullable = (default is None) if nullable is None else nullable
        self.doc = doc

    def check(self, value, key, source):
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(source, key, f"must not be null ({self.describe()})")
        return self._check(value, key, source)

    def _check(self, value, key, source):
        return value

    def describe(self) -> str:
        return "any value"

    def fill(self):
        return copy.deepcopy(self.default)


class Any_(Field):
    """Anything (documented free-form value)."""


class Bool(Field):
    def _check(self, value, key, source):
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"must be true or false, got {value!r}")
        return value

    def describe(self):
        return "true or false"


class Int(Field):
    def __init__(self, default=None, min=None, max=None, **kw):  # noqa: A002
        super().__init__(default, **kw)
        self.min, self.max = min, max

    def _check(self, value, key, source):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(source, key, f"must be an integer, got {value!r}")
        if self.min is not None and value < self.min:
            raise ConfigError(source, key, f"must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ConfigError(source, key, f"must be <= {self.max}, got {value}")
        return value

    def describe(self):
        return "an integer" + (f" >= {self.min}" if self.min is not None else "")


class Float(Field):
    def __init__(self, default=None, min=None, max=None, exclusive_min=False, **kw):  # noqa: A002
        super().__init__(default, **kw)
        self.min, self.max, self.exclusive_min = min, max, exclusive_min

    def _check(self, value, key, source):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"must be a number, got {value!r}")
        value = float(value)
        if self.min is not None and (value < self.min or (self.exclusive_min and value == self.min)):
            op = ">" if self.exclusive_min else ">="
            raise ConfigError(source, key, f"must be {op} {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ConfigError(source, key, f"must be <= {self.max}, got {value}")
        return value

    def describe(self):
        return "a number"


class Str(Field):
    def _check(self, value, key, source):
        if not isinstance(value, str):
            raise ConfigError(source, key, f"must be a string, got {value!r}")
        return value

    def describe(self):
        return "a string"


class Choice(Field):
    """One of the given values (strings, or booleans/numbers)."""

    def __init__(self, *choices, default=REQUIRED, **kw):
        super().__init__(choices[0] if default is REQUIRED else default, **kw)
        self.choices = choices

    def _check(self, value, key, source):
        if value not in self.choices or (isinstance(value, bool) and not any(
                isinstance(c, bool) for c in self.choices)):
            raise ConfigError(source, key, f"must be one of {list(self.choices)}, got {value!r}")
        return value

    def describe(self):
        return f"one of {list(self.choices)}"


class List(Field):
    """A list of values of one field type; ``length`` fixes its length, ``min_length`` bounds it."""

    def __init__(self, item: Field, default=None, length=None, min_length=None, **kw):
        super().__init__(default, **kw)
        self.item, self.length, self.min_length = item, length, min_length

    def _check(self, value, key, source):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"must be a list, got {value!r}")
        if self.length is not None and len(value) != self.length:
            raise ConfigError(source, key, f"must have {self.length} entries, got {len(value)}")
        if self.min_length is not None and len(value) < self.min_length:
            raise ConfigError(source, key, f"must have at least {self.min_length} entries")
        return [self.item.check(v, f"{key}[{i}]", source) for i, v in enumerate(value)]

    def describe(self):
        return "a list"


class Custom(Field):
    """A value checked and normalised by ``fn(value, key, source) -> value`` (raises
    ConfigError); a missing or null value is replaced by ``default`` first, so ``fn`` can fill
    in a section's defaults (e.g. the Trainer's)."""

    def __init__(self, fn: Callable, default=None, **kw):
        super().__init__(default, **kw)
        self.fn = fn

    def check(self, value, key, source):
        return self.fn(copy.deepcopy(self.default) if value is None else value, key, source)


class Section(Field):
    """A mapping with known keys. ``open=True`` also accepts unknown keys (kept unchecked);
    ``values=`` checks every value of a mapping with free keys against one field."""

    def __init__(self, fields: Mapping[str, Field] | None = None, open=False,  # noqa: A002
                 values: Field | None = None, nullable=True, doc=""):
        super().__init__(None, nullable=nullable, doc=doc)
        self.fields = dict(fields or {})
        self.open = open
        self.values = values

    def fill(self):
        return {k: f.fill() for k, f in self.fields.items()
                if not (f.default is REQUIRED) and not (isinstance(f, Section) and f.values)}

    def check(self, value, key, source):
        if value is None:
            value = {}
        return self._check(value, key, source)

    def _check(self, value, key, source):
        if not isinstance(value, Mapping):
            raise ConfigError(source, key or "<top level>",
                              f"must be a mapping, got {type(value).__name__}")
        out = {}
        for name, item in value.items():
            sub = f"{key}.{name}" if key else str(name)
            field = self.fields.get(name, self.values)
            if field is None:
                if self.open:
                    out[name] = item
                    continue
                known = ", ".join(sorted(self.fields)) or "none"
                raise ConfigError(source, sub, f"unknown key (known keys here: {known})")
            out[name] = field.check(item, sub, source)
        for name, field in self.fields.items():
            if name in out:
                continue
            sub = f"{key}.{name}" if key else name
            if field.default is REQUIRED:
                raise ConfigError(source, sub, "is required but missing")
            out[name] = field.check(None, sub, source) if isinstance(field, (Section, Custom)) \
                else field.fill()
        return out

    def describe(self):
        return "a mapping"


def validate(cfg, schema: Section, source=None) -> dict:
    """``cfg`` checked against ``schema`` with defaults filled in (a new dict); raises
    :class:`ConfigError` naming ``source`` (default: ``cfg.source``) and the dotted key."""
    source = source if source is not None else getattr(cfg, "source", None)
    return schema.check(dict(cfg), "", source)


__all__ = ["Field", "Any_", "Bool", "Int", "Float", "Str", "Choice", "List", "Custom", "Section",
           "REQUIRED", "validate"]
