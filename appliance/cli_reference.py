"""The command-line reference, rendered as Markdown from the argparse parser the ``appliance`` command runs.

Every command, its usage line, its help and each argument's help, default and allowed values come from
the parser itself, so the reference follows the code. Regenerate it with
``python -m appliance.cli_reference --write`` (docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from appliance.cli import build_parser
from appliance.cli.exit_codes import EXIT_CODES
from appliance.reference_doc import reference_main

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
REGENERATE = "python -m appliance.cli_reference --write"
PROG = "appliance"


@dataclass
class Command:
    """One command: its words after ``appliance`` and what its parser takes."""

    words: tuple[str, ...]  # ('deploy', 'start'); () for ``appliance`` itself
    parser: argparse.ArgumentParser
    help: str
    usage: str  # the whole command line, with the parents' own arguments
    children: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join((PROG, *self.words))

    @property
    def anchor(self) -> str:
        # GitHub's heading slug of `## `appliance data show``: lowercase, spaces to hyphens
        return self.name.replace(" ", "-")


def commands(parser: argparse.ArgumentParser | None = None) -> list[Command]:
    """Every command, depth first in the parser's order, ``appliance`` itself first."""
    root = _command((), parser or build_parser(), None, PROG)
    found: list[Command] = []

    def walk(command: Command) -> None:
        found.append(command)
        for child in command.children:
            walk(child)

    walk(root)
    return found


def _command(words: tuple[str, ...], parser: argparse.ArgumentParser, help: str | None, prefix: str) -> Command:
    own = [a for a in _arguments(parser) if not isinstance(a, argparse._SubParsersAction)]
    subcommands = [a for a in _arguments(parser) if isinstance(a, argparse._SubParsersAction)]
    tokens = _usage(own, parser._mutually_exclusive_groups)
    for action in subcommands:
        tokens.append(_metavar(action) if action.required else f"[{_metavar(action)}]")
    command = Command(words, parser, help or parser.description or "", " ".join([prefix, *tokens]))
    for action in subcommands:
        # argparse keeps each subcommand's help on a pseudo-action; it has no public accessor
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        # the words before a subcommand: the parent's usage with its options left out
        lead = " ".join([prefix, *_usage([a for a in own if not a.option_strings], [])])
        for name, sub in action.choices.items():
            command.children.append(_command((*words, name), sub, helps.get(name), f"{lead} {name}"))
    return command


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    # argparse has no public list of a parser's arguments; _actions is what its own help reads
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _usage(actions: list[argparse.Action], groups: list) -> list[str]:
    """The usage tokens of these arguments: positionals first (``train MODEL [--resume [RUN]]``), then options."""
    grouped = {id(a): g for g in groups for a in g._group_actions}
    tokens: list[str] = []
    done: set[int] = set()
    for action in [a for a in actions if not a.option_strings] + [a for a in actions if a.option_strings]:
        if id(action) in done:
            continue
        group = grouped.get(id(action))
        if group is not None:
            members = [a for a in group._group_actions if a in actions]
            done.update(id(a) for a in members)
            inner = " | ".join(_token(a, bare=True) for a in members)
            tokens.append(f"({inner})" if group.required else f"[{inner}]")
        else:
            tokens.append(_token(action))
    return tokens


def _token(action: argparse.Action, bare: bool = False) -> str:
    if not action.option_strings:
        value = _metavar(action)
        if action.nargs == "?":
            return f"[{value}]"
        if action.nargs == "+":
            return f"{value} [{value} ...]"
        if action.nargs == "*":
            return f"[{value} ...]"
        return value
    text = _flag(action)
    if action.nargs != 0:
        value = _metavar(action)
        text += f" [{value}]" if action.nargs == "?" else f" {value}"
    return text if bare or action.required else f"[{text}]"


def _flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper()


def _expanded_help(action: argparse.Action) -> str:
    """The help as ``--help`` prints it, with ``%(default)s`` and the like filled in."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = PROG
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    return action.help % params


def _default(action: argparse.Action) -> str:
    if action.required or (not action.option_strings and action.nargs not in ("?", "*")):
        return "required"
    if action.nargs == 0 or action.default in (None, "", argparse.SUPPRESS):
        return ""
    value = action.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _render(command: Command) -> list[str]:
    out = [f"## `{command.name}`", ""]
    if command.help:
        out += [command.help[0].upper() + command.help[1:] + ("" if command.help.endswith((".", "…")) else "."), ""]
    out += ["```", command.usage, "```", ""]
    arguments = [a for a in _arguments(command.parser) if not isinstance(a, argparse._SubParsersAction)]
    if arguments:
        out += ["| argument | default | |", "|---|---|---|"]
        for action in arguments:
            shown = _token(action, bare=True) if action.option_strings else _metavar(action)
            if action.option_strings and len(action.option_strings) > 1:
                shown = ", ".join(sorted(action.option_strings, key=len)[:-1] + [shown])
            text = _expanded_help(action)
            if action.choices is not None and not isinstance(action.choices, dict):
                text += ("; " if text else "") + "one of " + ", ".join(f"`{c}`" for c in action.choices)
            out.append(f"| `{_cell(shown)}` | {_default(action)} | {_cell(text)} |")
        out.append("")
    if command.children:
        out += ["| command | |", "|---|---|"]
        out += [f"| [`{child.name}`](#{child.anchor}) | {_cell(child.help)} |" for child in command.children]
        out.append("")
    return out


def reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference as Markdown."""
    found = commands(parser)
    out = [
        "# Command-line reference",
        "",
        f"Generated from the `appliance` command's parser by `{REGENERATE}`; do not edit it by hand.",
        "`appliance --help` and `appliance COMMAND --help` print the same help; `python -m appliance` is the",
        "same command. A mistake a user can make prints one line starting `error:` and exits 1. A command that",
        "reads takes `--json`: one JSON document on stdout and nothing else (times as ISO 8601 UTC text, a",
        "number that is not one as null); its help says what the document holds.",
        "",
        "Every command but `init`, `up` and `restore`, which make it, and `machine`, which reports on the machine",
        "either way, refuses a data directory that does not exist (a mistyped `--home` creates nothing).",
        "",
        "Exit status (`appliance/cli/exit_codes.py`):",
        "",
        "| status | name | |",
        "|---|---|---|",
        *(f"| {code} | `{name}` | {_cell(meaning)} |" for code, name, meaning in EXIT_CODES),
        "",
    ]
    for command in found:
        out += _render(command)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the reference, or write it to docs/cli.md with ``--write``."""
    description = (__doc__ or "").splitlines()[0]
    return reference_main(argv, "python -m appliance.cli_reference", description, REFERENCE, reference)


if __name__ == "__main__":
    sys.exit(main())
