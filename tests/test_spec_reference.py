"""The spec and contract reference: generated from the Structs, complete, and in step with docs/reference.md."""

from __future__ import annotations

import re
import tomllib
from typing import Annotated, Literal

import msgspec
import msgspec.inspect as mi
import pytest

from appliance import spec_reference
from appliance.spec_reference import REFERENCE, REGENERATE, ROOTS, field_comments, reference, tables


def test_committed_reference_is_current():
    assert REFERENCE.exists(), f"docs/reference.md is missing; run `{REGENERATE}`"
    assert REFERENCE.read_text() == reference(), (
        f"docs/reference.md is out of date with the spec/contract Structs; run `{REGENERATE}` and commit it"
    )


def test_every_field_is_described():
    doc = _parse(reference())
    missing = [
        f"{struct.cls.__qualname__}.{field.name}"
        for heading, struct, field in _fields()
        if not doc["rows"].get(heading, {}).get(field.encode_name, {}).get("description")
    ]
    assert not missing, "fields without a description: give each a trailing `# comment` on its line: " + ", ".join(
        missing
    )


def test_defaults_and_allowed_values_match_the_structs():
    doc = _parse(reference())
    for heading, _struct, field in _fields():
        row = doc["rows"][heading][field.encode_name]
        where = f"{heading} {field.encode_name}"
        if field.required:
            assert row["default"] == "required", where
            continue
        value = field.default_factory() if field.default_factory is not msgspec.NODEFAULT else field.default
        inner = _inner(field.type)
        if value is None:
            assert row["default"] == "not set", where
        elif isinstance(value, msgspec.Struct):
            shown = {} if row["default"] == "all defaults" else _toml_value(row["default"])
            assert msgspec.convert(shown, type(value)) == value, where
        elif isinstance(inner, mi.ListType) and isinstance(inner.item_type, mi.StructType) and value:
            child = _child_heading(heading, field.encode_name, inner)
            (block,) = doc["blocks"][child]
            shown = tomllib.loads(block)
            for part in child.strip("[]").split("."):
                shown = shown[part]
            assert msgspec.convert(shown, list[inner.item_type.cls]) == value, where
        else:
            assert _toml_value(row["default"]) == msgspec.to_builtins(value), where
        for literal in _literals(field.type):
            for v in literal.values:
                assert f"`{_toml_literal(v)}`" in row["type"], where


class Window(msgspec.Struct, frozen=True):
    """How far back to look."""

    length: str = "1d"  # the window's length
    bins: Annotated[int, msgspec.Meta(ge=2)] = 10


class Rule(msgspec.Struct, frozen=True):
    name: str  # what the rule is called
    op: Literal["<", ">"] = ">"  # below or above
    levels: list[float] = msgspec.field(  # thresholds, low to high
        default_factory=lambda: [0.1, 0.2]
    )
    shares: list[Annotated[float, msgspec.Meta(gt=0, le=1)]] = []  # parts of one


class Root(msgspec.Struct, frozen=True):
    window: Window = Window(bins=20)  # overridden default
    extra: Window | None = None  # an optional table
    rules: list[Rule] = msgspec.field(default_factory=lambda: [Rule("a"), Rule("b", "<")])  # rules
    named: dict[str, Window] = {}  # one table per name


def test_the_generator_follows_whatever_the_structs_say():
    assert field_comments(Rule) == {
        "name": "what the rule is called",
        "op": "below or above",
        "levels": "thresholds, low to high",
        "shares": "parts of one",
    }
    assert field_comments(Window)["bins"] == ""
    found = {t.heading: t for t in tables(Root)}
    assert list(found) == ["", "[window]", "[extra]", "[[rules]]", "[named.<name>]"]
    top = {k.name: k for k in found[""].keys}
    assert top["window"].default == "`{ bins = 20 }`"
    assert top["extra"].default == "not set" and top["extra"].type == "table"
    assert top["named"].type == "table of tables" and top["named"].default == "`{}`"
    assert tomllib.loads(found["[[rules]]"].defaults)["rules"] == [{"name": "a"}, {"name": "b", "op": "<"}]
    assert found["[window]"].lead == ["Overridden default.", "How far back to look."]
    rule = {k.name: k for k in found["[[rules]]"].keys}
    assert rule["op"].type == 'string, one of `"<"`, `">"`'
    assert rule["levels"].type == "list of floats" and rule["levels"].default == "`[0.1, 0.2]`"
    # limits a type sets (msgspec.Meta) are part of the key's type
    assert {k.name: k.type for k in found["[window]"].keys}["bins"] == "integer, at least 2"
    assert rule["shares"].type == "list of floats, each above 0 and at most 1"


def test_a_field_without_a_toml_form_is_refused():
    class Odd(msgspec.Struct):
        when: complex = 1j  # no TOML form

    with pytest.raises(TypeError, match="INTERNAL"):
        tables(Odd)


def test_prints_the_reference(capsys):
    assert spec_reference.main([]) == 0
    assert capsys.readouterr().out == reference()


# --- an independent walk of the Structs (msgspec.inspect) and a reader of the rendered Markdown ---


def _fields():
    """(heading, Struct, field) for every field a file may carry, headings as the reference writes them."""
    for title, root in ROOTS:
        yield from _walk(f"## {title}", "", mi.type_info(root))


def _walk(heading, path, struct):
    children = []
    for field in struct.fields:
        if field.name in spec_reference.INTERNAL.get(struct.cls, set()):
            continue
        yield heading, struct, field
        inner = _inner(field.type)
        key = f"{path}.{field.encode_name}" if path else field.encode_name
        if isinstance(inner, mi.StructType):
            children.append((f"[{key}]", key, inner))
        elif isinstance(inner, mi.ListType) and isinstance(inner.item_type, mi.StructType):
            children.append((f"[[{key}]]", key, inner.item_type))
        elif isinstance(inner, mi.DictType) and isinstance(inner.value_type, mi.StructType):
            children.append((f"[{key}.<name>]", f"{key}.<name>", inner.value_type))
    for child_heading, child_path, child in children:
        yield from _walk(child_heading, child_path, child)


def _child_heading(heading, key, inner):
    path = "" if heading.startswith("## ") else heading.strip("[]")
    return f"[[{path + '.' if path else ''}{key}]]"


def _inner(t):
    if isinstance(t, mi.UnionType):
        rest = [u for u in t.types if not isinstance(u, mi.NoneType)]
        return rest[0] if len(rest) == 1 else t
    return t


def _literals(t):
    if isinstance(t, mi.LiteralType):
        yield t
    for inner in getattr(t, "types", ()):
        yield from _literals(inner)
    if isinstance(t, mi.ListType):
        yield from _literals(t.item_type)


def _toml_value(cell: str):
    match = re.fullmatch(r"`(.*)`", cell)
    assert match, f"default {cell!r} is not a TOML value in backticks"
    return tomllib.loads(f"v = {match[1]}")["v"]


def _toml_literal(v):
    return f'"{v}"' if isinstance(v, str) else str(v).lower()


def _parse(markdown: str) -> dict:
    """{'rows': {heading: {key: {type, default, description}}}, 'blocks': {heading: [toml, ...]}}."""
    rows, blocks, heading, block = {}, {}, None, None
    for line in markdown.splitlines():
        if block is not None:
            if line == "```":
                blocks.setdefault(heading, []).append("\n".join(block))
                block = None
            else:
                block.append(line)
        elif line == "```toml":
            block = []
        elif line.startswith("## "):
            heading = line
        elif line.startswith("### "):
            heading = line[4:].strip("`")
        elif line.startswith("| `"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            key, kind, default, description = cells
            rows.setdefault(heading, {})[key.strip("`")] = {
                "type": kind,
                "default": default,
                "description": description,
            }
    return {"rows": rows, "blocks": blocks}
