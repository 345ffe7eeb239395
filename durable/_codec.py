"""Codecs: how arguments, results and payloads are stored in the log.

The JSON codec (default) stores plain JSON in ``jsonb``; pydantic models, dataclasses,
datetimes, UUIDs, enums and the like are converted on the way in, and rebuilt on the way
out from the type annotations of the function that receives them. The pickle codec stores
cloudpickle bytes (base64 inside a small JSON object) for arbitrary objects: use it only
with a database that only trusted code can write, because unpickling runs code.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import logging
import math
import typing
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import pydantic
import pydantic_core

from ._errors import SerializationError
from .store import ConfigError

__all__ = ["Codec", "JsonCodec", "PickleCodec", "make_codec"]

log = logging.getLogger("durable")

_PICKLE_KEY = "$pickle"


class Codec:
    """Converts Python values to JSON-compatible values and back."""

    name = "abstract"

    def encode(self, value: Any) -> Any:
        """A JSON-compatible form of ``value``; raises :class:`SerializationError`."""
        raise NotImplementedError

    def decode(self, raw: Any, annotation: Any = inspect.Parameter.empty) -> Any:
        """Rebuild a value; ``annotation`` (if known) guides the JSON codec."""
        raise NotImplementedError

    def encode_args(self, args: Sequence[Any]) -> list[Any]:
        """Encode positional arguments."""
        return [self.encode(a) for a in args]


class JsonCodec(Codec):
    """The default codec: JSON in ``jsonb``, typed values rebuilt from annotations."""

    name = "json"

    def encode(self, value: Any) -> Any:
        try:
            jsonable = pydantic_core.to_jsonable_python(value)
        except (pydantic_core.PydanticSerializationError, TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot store a value of type {_type_name(value)} with the JSON codec; "
                "return/pass JSON-compatible data, a pydantic model or a dataclass, or use "
                "App(codec='pickle')"
            ) from exc
        problem = _jsonb_problem(jsonable)
        if problem is not None:
            raise SerializationError(
                f"cannot store a value of type {_type_name(value)} with the JSON codec: it "
                f"holds {problem}, which PostgreSQL's jsonb cannot hold; replace it (None for "
                "a missing number, a string without NUL characters), or use App(codec='pickle')"
            )
        return jsonable

    def decode(self, raw: Any, annotation: Any = inspect.Parameter.empty) -> Any:
        if annotation is inspect.Parameter.empty or annotation is Any or annotation is None:
            return raw
        adapter = _adapter(annotation)
        if adapter is None:
            return raw
        try:
            return adapter.validate_python(raw)
        except pydantic.ValidationError as exc:
            _warn_once(annotation, exc)
            return raw


class PickleCodec(Codec):
    """cloudpickle for arbitrary objects. Trusts the database: unpickling runs code."""

    name = "pickle"

    def encode(self, value: Any) -> Any:
        try:
            blob = cloudpickle.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"cannot pickle a value of type {_type_name(value)}: {exc}"
            ) from exc
        return {_PICKLE_KEY: base64.b64encode(blob).decode("ascii")}

    def decode(self, raw: Any, annotation: Any = inspect.Parameter.empty) -> Any:
        if isinstance(raw, dict) and len(raw) == 1 and _PICKLE_KEY in raw:
            return cloudpickle.loads(base64.b64decode(raw[_PICKLE_KEY]))
        return raw


def _jsonb_problem(jsonable: Any) -> str | None:
    """What in a JSON-compatible value jsonb refuses (NaN, an infinity, a NUL character,
    an unpaired surrogate), or None. One C-speed dump decides the common case."""
    kind = type(jsonable)
    if jsonable is None or kind is bool or kind is int:  # the hot path: nothing to check
        return None
    if kind is float:
        return None if math.isfinite(jsonable) else "NaN or an infinity"
    if kind is str and "\x00" not in jsonable and jsonable.isascii():
        return None
    try:
        text = json.dumps(jsonable, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return "NaN or an infinity"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a string with an unpaired surrogate"
    if "\\u0000" in text and _has_nul(jsonable):  # the escape, or a literal backslash-u
        return "a string with a NUL character (\\x00)"
    return None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def make_codec(codec: str | Codec) -> Codec:
    """The codec named ``"json"`` or ``"pickle"`` (or a :class:`Codec` instance)."""
    if isinstance(codec, Codec):
        return codec
    if codec == "json":
        return JsonCodec()
    if codec == "pickle":
        return PickleCodec()
    raise ConfigError(f"unknown codec {codec!r}; use 'json' (default) or 'pickle'")


@functools.lru_cache(maxsize=1024)
def _adapter_cached(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
    try:
        return pydantic.TypeAdapter(annotation)
    except Exception:
        return None


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
    try:
        return _adapter_cached(annotation)
    except TypeError:  # unhashable annotation
        try:
            return pydantic.TypeAdapter(annotation)
        except Exception:
            return None


_warned: set[str] = set()


def _warn_once(annotation: Any, exc: pydantic.ValidationError) -> None:
    """Say (once per type) that a stored value does not fit its annotation: the code then
    gets the stored JSON as it is, which is what it was given before the change."""
    name = getattr(annotation, "__qualname__", None) or repr(annotation)
    if name in _warned:
        return
    _warned.add(name)
    first = (str(exc).splitlines() or [""])[0]
    log.warning(
        "a stored value does not fit the annotation %s (%s); the code receives the stored "
        "JSON unchanged (later mismatches of this type are not logged)",
        name,
        first,
    )


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``fn`` (empty when they cannot be resolved)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def qualified_name(exc_type: type[BaseException]) -> str:
    """``ValueError`` for builtins, ``module.Qual.Name`` otherwise."""
    if exc_type.__module__ == "builtins":
        return exc_type.__qualname__
    return f"{exc_type.__module__}.{exc_type.__qualname__}"
