"""The reference of every model-spec and data-contract key, rendered as Markdown from the typed schema.

Types and defaults come from the msgspec Structs, descriptions from the trailing ``# comment`` on each
field's line in its class body and from each Struct's docstring, so the reference follows the code.
Regenerate it with ``python -m appliance.spec_reference --write`` (docs/reference.md).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path

import msgspec

from appliance.data.contract import DataContract
from appliance.reference_doc import reference_main
from appliance.spec import ModelSpec

# The documents, in order: (title, root Struct).
ROOTS: list[tuple[str, type[msgspec.Struct]]] = [("Model spec", ModelSpec), ("Data contract", DataContract)]
# Fields the loader fills in itself; a file never carries them.
INTERNAL: dict[type, set[str]] = {ModelSpec: {"path"}}
REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
REGENERATE = "python -m appliance.spec_reference --write"
REQUIRED = "required"
NOT_SET = "not set"  # TOML has no null: a None default is a key left out
ALL_DEFAULTS = "all defaults"

_SCALARS = {str: "string", int: "integer", float: "float", bool: "boolean"}
# A field's msgspec.Meta limits, as its type cell states them: 'integer, at least 1'.
_LIMITS = {
    "ge": "at least {}",
    "gt": "above {}",
    "le": "at most {}",
    "lt": "below {}",
    "multiple_of": "a multiple of {}",
    "min_length": "at least {} long",
    "max_length": "at most {} long",
    "pattern": "matching `{}`",
}


class Key(msgspec.Struct, frozen=True):
    """One key of a table: its TOML type, its default and what it means."""

    name: str
    type: str
    default: str
    description: str
    table: str = ""  # the heading of the table this key opens, if it holds tables


class Table(msgspec.Struct, frozen=True):
    """One TOML table or array of tables, with the keys it may hold."""

    heading: str  # '[training.search]', '[[alerts]]'; '' for a document's top level
    lead: list[str]  # paragraphs: the key's comment in its parent, then the Struct's docstring
    keys: list[Key]
    defaults: str = ""  # an array of tables' default entries, as TOML


def reference() -> str:
    """The whole reference as Markdown."""
    documents = [(title, tables(root)) for title, root in ROOTS]
    anchors, seen = {}, {}
    for title, found in documents:
        _slug(title, seen)
        for table in found[1:]:
            anchors[table.heading] = _slug(f"`{table.heading}`", seen)
    out = [
        "# Model spec and data contract reference",
        "",
        f"Generated from the typed schema by `{REGENERATE}`; do not edit it by hand.",
        "A key's description is the comment on its line in the class that reads it.",
        "A key left out takes its default; TOML has no null, so where a description says None,",
        "leave the key out. An array of tables, `[[x]]`, may also be written inline: `x = [{ ... }, ...]`.",
        "",
    ]
    for title, found in documents:
        out += [f"## {title}", ""]
        for table in found:
            out += _render(table, anchors)
    return "\n".join(out).rstrip("\n") + "\n"


def tables(root: type[msgspec.Struct]) -> list[Table]:
    """A document's tables, depth first in field order; the first is the document's top level."""
    doc = _docstring(root) or _docstring(sys.modules[root.__module__])
    found: list[Table] = []
    _walk(root, "", "", [doc] if doc else [], "", found)
    return found


def field_comments(cls: type) -> dict[str, str]:
    """Each field's trailing ``# comment`` in the class body (joined, for a field over several lines)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, node.end_lineno + 1)
            found[node.target.id] = _markdown(" ".join(comments[n] for n in lines if n in comments))
    return found


def _walk(
    cls: type[msgspec.Struct], path: str, heading: str, lead: list[str], defaults: str, found: list[Table]
) -> None:
    keys: list[Key] = []
    found.append(Table(heading, lead, keys, defaults))
    comments = field_comments(cls)
    nested = []
    for f in msgspec.structs.fields(cls):
        if f.name in INTERNAL.get(cls, set()):
            continue
        description = comments.get(f.name, "")
        child, child_path, child_heading = _child(f.type, _join(path, f.encode_name))
        value = _default_value(f)
        keys.append(Key(f.encode_name, _toml_type(f.type), _default(f), description, child_heading))
        if child is not None:
            child_lead = [p for p in (_sentence(description), _docstring(child)) if p]
            items = ""
            if isinstance(value, list) and value:
                child_lead.append(
                    f"Without any `{child_heading}` in the file these apply; "
                    f"one or more `{child_heading}` replace them all:"
                )
                items = "\n\n".join(
                    child_heading + "".join(f"\n{k} = {v}" for k, v in _changed(item).items()) for item in value
                )
            nested.append((child, child_path, child_heading, child_lead, items))
    for args in nested:
        _walk(*args, found)


def _child(tp, path: str) -> tuple[type | None, str, str]:
    """The Struct a key of this type holds tables of, with their dotted path and TOML heading."""
    tp = _bare(_optional(tp))
    origin, args = typing.get_origin(tp), [_bare(a) for a in typing.get_args(tp)]
    if _is_struct(tp):
        return tp, path, f"[{path}]"
    if origin is list and _is_struct(args[0]):
        return args[0], path, f"[[{path}]]"
    if origin is dict and _is_struct(args[1]):
        return args[1], f"{path}.<name>", f"[{path}.<name>]"
    return None, "", ""


def _default(f: msgspec.structs.FieldInfo) -> str:
    if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT:
        return REQUIRED
    value = _default_value(f)
    if value is None:
        return NOT_SET
    if isinstance(value, msgspec.Struct):
        changed = _changed(value)
        return f"`{{ {', '.join(f'{k} = {v}' for k, v in changed.items())} }}`" if changed else ALL_DEFAULTS
    if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
        return f"the {len(value)} in its section"
    return f"`{_toml(msgspec.to_builtins(value))}`"


def _default_value(f: msgspec.structs.FieldInfo):
    if f.default_factory is not msgspec.NODEFAULT:
        return f.default_factory()
    return None if f.default is msgspec.NODEFAULT else f.default


def _changed(value: msgspec.Struct) -> dict[str, str]:
    """The keys of a Struct value that differ from its fields' defaults, as TOML values."""
    changed = {}
    for f in msgspec.structs.fields(value):
        v = getattr(value, f.name)
        has_default = f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
        if v is not None and not (has_default and v == _default_value(f)):
            changed[_bare_key(f.encode_name)] = _toml(msgspec.to_builtins(v))
    return changed


def _toml_type(tp) -> str:
    """A type as a file writes it: 'string', 'list of floats', 'table of tables'; a Literal with its values;
    limits the type sets after a comma: 'integer, at least 1', 'list of floats, each above 0 and at most 100'."""
    tp = _optional(tp)
    if typing.get_origin(tp) is typing.Annotated:
        limits = _limits(tp)
        return _toml_type(_bare(tp)) + (f", {limits}" if limits else "")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        kinds = _or(list(dict.fromkeys(_toml_type(type(v)) for v in args)))
        return f"{kinds}, one of " + ", ".join(f"`{_toml(v)}`" for v in args)
    if tp in _SCALARS:
        return _SCALARS[tp]
    if _is_struct(tp):
        return "table"
    if origin in (types.UnionType, typing.Union):
        return _or([_toml_type(a) for a in args])
    if origin is list:
        return "array of tables" if _is_struct(_bare(args[0])) else "list of " + _items(args[0])
    if origin is dict and args[0] is str:
        return "table of " + _items(args[1])
    raise TypeError(f"{tp!r} has no TOML form; give the field a TOML type, or list it in INTERNAL")


def _items(tp) -> str:
    """The type of a list's or table's values, plural, with any limits on each: 'floats, each above 0'."""
    limits = _limits(tp)
    return _plural(_toml_type(_bare(tp))) + (f", each {limits}" if limits else "")


def _bare(tp):
    """``Annotated[X, ...]`` as X."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def _limits(tp) -> str:
    """The msgspec.Meta limits of an ``Annotated`` type in words: 'above 0 and at most 100'; '' for none."""
    if typing.get_origin(tp) is not typing.Annotated:
        return ""
    words = [
        text.format(_toml(getattr(meta, name)) if name != "pattern" else meta.pattern)
        for meta in typing.get_args(tp)[1:]
        if isinstance(meta, msgspec.Meta)
        for name, text in _LIMITS.items()
        if getattr(meta, name) is not None
    ]
    return " and ".join(words)


def _plural(text: str) -> str:
    """'float, integer or string' as 'floats, integers or strings'; a Literal's values stay as they are."""
    kinds, one_of, values = text.partition(", one of ")
    kinds = re.sub(r"\b(string|integer|float|boolean|table)\b", r"\1s", kinds)
    return kinds + (f", each one of {values}" if one_of else "")


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _optional(tp):
    """``X | None`` as ``X``: TOML has no null, so None is a key left out."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        rest = tuple(a for a in typing.get_args(tp) if a is not type(None))
        # A union built at run time from a tuple: only typing.Union takes one.
        return rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
    return tp


def _is_struct(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _toml(value) -> str:
    """A builtin value (as msgspec.to_builtins gives it) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_bare_key(k)} = {_toml(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"{value!r} has no TOML form")


def _bare_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _docstring(obj) -> str:
    """An object's own docstring (a Struct without one would otherwise show msgspec.Struct's)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    return _markdown(inspect.cleandoc(doc)) if doc else ""


def _sentence(comment: str) -> str:
    """A field's comment as a table's opening sentence: capitalized (unless it opens with a name) and closed."""
    if not comment:
        return ""
    first = comment.split(" ", 1)[0]
    if "_" not in first and "`" not in first:
        comment = comment[0].upper() + comment[1:]
    return comment if comment[-1] in ".:!?…" else comment + "."


def _markdown(text: str) -> str:
    """reStructuredText's ``literal`` as Markdown's `literal`."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _slug(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading, numbering repeats the way it does."""
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


def _render(table: Table, anchors: dict[str, str]) -> list[str]:
    out = [f"### `{table.heading}`", ""] if table.heading else []
    for paragraph in table.lead:
        out += [paragraph, ""]
    if table.defaults:
        out += ["```toml", table.defaults, "```", ""]
    out += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key in table.keys:
        kind = f"[{key.type}](#{anchors[key.table]})" if key.table else key.type
        cells = [f"`{key.name}`", kind, key.default, key.description]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    """Print the reference, or write it to docs/reference.md with ``--write``."""
    description = (__doc__ or "").splitlines()[0]
    return reference_main(argv, "python -m appliance.spec_reference", description, REFERENCE, reference)


if __name__ == "__main__":
    raise SystemExit(main())
