"""Reading a TOML file into its typed Struct, in one place: whatever is wrong with a file becomes one error
that names the file, the field's path in it and what to do.

Limits a type can state live in the type (``Annotated[int, msgspec.Meta(ge=1)]``), so msgspec names the
field that breaks them. A rule a type cannot state (an order, one field against another) raises
``FieldError`` naming its field, from the Struct's ``__post_init__`` or from a ``check`` run on the whole
value once converted; the loader prefixes the path of the table above it and the file.

    model spec /srv/fraud.toml: serving.max_batch: Expected `int` >= 1, got 0; fix the spec and try again
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from appliance.errors import InvalidInput, NotFound

T = TypeVar("T")

# msgspec ends a validation message with where it failed: "Expected `int` >= 1 - at `$.serving.max_batch`".
_AT = re.compile(r"^(?P<problem>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


class FieldError(InvalidInput, ValueError):
    """A value its field's type cannot refuse by itself: ``field`` is the key (or dotted path) it is in.

    A ValueError, so that msgspec, converting a file, keeps the path of the table whose ``__post_init__``
    raised it; an InvalidInput, so that a Struct built in code with such a value is refused the same way.
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _read_toml(path: Path, what: str, expected: str, fix: str = "fix the file and try again") -> dict[str, Any]:
    """A TOML file's tables; a missing file is NotFound, an unreadable one InvalidInput, each naming ``what``
    the file should be (``expected``: what to pass instead, e.g. 'a .toml spec')."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"{what} {path} does not exist; pass the path of {expected}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} {path} is a folder; pass the path of {expected}") from None
    except UnicodeDecodeError as e:
        raise InvalidInput(
            f"{what} {path} is not UTF-8 text (at byte offset {e.start}); pass the path of {expected}"
        ) from None
    except tomllib.TOMLDecodeError as e:
        # tomllib's message carries the place: "Expected '=' after a key in a key/value pair (at line 3, column 7)"
        raise InvalidInput(f"{what} {path} is not valid TOML: {e}; {fix}") from None


def load_toml(
    path: Path,
    type_: type[T],
    what: str,
    expected: str,
    *,
    fix: str = "fix the file and try again",
    check: Callable[[T], None] | None = None,
) -> T:
    """Read ``path`` as ``type_``, then run ``check`` (rules across tables) on it; any problem is an
    InvalidInput that names ``what`` the file is, its path, the field and ``fix``."""
    raw = _read_toml(path, what, expected, fix)
    try:
        value = msgspec.convert(raw, type_)
        if check is not None:
            check(value)
    except msgspec.ValidationError as e:
        raise InvalidInput(f"{what} {path}: {_explain(e, raw, type_)}; {fix}") from None
    except FieldError as e:
        raise InvalidInput(f"{what} {path}: {e.field}: {e.problem}; {fix}") from None
    except InvalidInput as e:
        # A Struct's own check raising InvalidInput (not a ValueError, so msgspec passes it through without
        # a path); its message names its field itself.
        raise InvalidInput(f"{what} {path}: {e}; {fix}") from None
    return value


def _explain(error: msgspec.ValidationError, raw: Any, type_: Any) -> str:
    """A validation error as 'field.path: problem, got VALUE', the path as the file's keys spell it; a value
    outside a field's fixed choices lists them, and names the one it looks like a typo of."""
    match = _AT.match(str(error))
    if match is None:
        return str(error)
    problem, path = match["problem"], match["path"].lstrip(".")
    cause = error.__cause__
    if isinstance(cause, FieldError):  # raised in a Struct's __post_init__: msgspec's path is its table's
        return f"{'.'.join(p for p in (path, cause.field) if p)}: {cause.problem}"
    if not path:
        return problem
    value = _value_at(raw, path)  # msgspec states the limit ("Expected `int` >= 1"), not the value it refused
    if problem.startswith("Invalid enum value") and (
        choices := _choices(msgspec.inspect.type_info(type_), _STEP.findall("." + path.replace("[...]", "")))
    ):
        spelled = [c if isinstance(c, str) and re.fullmatch(r"[\w<>-]+", c) else json.dumps(c) for c in choices]
        if value is _MISSING:  # under a table of free keys, which msgspec's path spells `[...]`: its message
            value = problem.removeprefix("Invalid enum value ").strip("'")  # quotes the value
        likely = difflib.get_close_matches(str(value), [c for c in choices if isinstance(c, str)], n=1)
        return f"{path}: {json.dumps(value)} is not one of {', '.join(spelled)}" + (
            f" (did you mean {json.dumps(likely[0])}?)" if likely else ""
        )
    if value is not _MISSING and " got " not in problem and isinstance(value, (str, int, float, bool)):
        problem += f", got {json.dumps(value)}"
    return f"{path}: {problem}"


_MISSING = object()


def _choices(info: msgspec.inspect.Type, steps: list[tuple[str, str]]) -> list[Any]:
    """The values a Literal (or Enum) field allows, found by following ``steps`` (a path's (key, index) pairs,
    as ``_STEP`` reads them) through the file's type: tables, lists, optional and union fields. Empty where
    they lead to no such field."""
    if isinstance(info, msgspec.inspect.UnionType):
        return [choice for member in info.types for choice in _choices(member, steps)]
    if isinstance(info, msgspec.inspect.Metadata):
        return _choices(info.type, steps)
    if not steps:
        if isinstance(info, msgspec.inspect.LiteralType):
            return list(info.values)
        return [member.value for member in info.cls] if isinstance(info, msgspec.inspect.EnumType) else []
    (key, index), rest = steps[0], steps[1:]
    if key and isinstance(info, msgspec.inspect.StructType):
        field = next((f for f in info.fields if f.encode_name == key), None)
        return _choices(field.type, rest) if field else []
    if isinstance(info, msgspec.inspect.DictType):  # its key is `[...]` in the path, which has no step for it
        return _choices(info.value_type, steps)
    if index and isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.VarTupleType)):
        return _choices(info.item_type, rest)
    return []


def _value_at(raw: Any, path: str) -> Any:
    """The value at a path like 'alerts[0].threshold' in the file's tables, or _MISSING."""
    value = raw
    for key, index in _STEP.findall("." + path):
        try:
            value = value[key] if key else value[int(index)]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def parse_toml(text: str) -> dict[str, Any] | None:
    """The TOML document in ``text`` as plain tables, or None when it is not TOML. For checking a rewrite of a
    file's text (a backup's copy of a spec); a file the appliance reads goes through ``load_toml``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
