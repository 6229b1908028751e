"""The docs can't drift: the CLI reference is generated and current, every command and HTTP route is
documented, the README stays short, and every relative link in README.md and docs/ leads somewhere."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from appliance import cli_reference
from appliance.cli_reference import REFERENCE, REGENERATE, build_parser, reference
from appliance.serving.app import create_app
from appliance.serving.predict import PREFIX, SUFFIX
from tests.conftest import command_paths

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
HTTP_API = DOCS / "http-api.md"
README_LIMIT = 8_000  # characters: what it is, the two commands, a tour, links; the rest lives in docs/


# --- the CLI reference ---


def test_committed_cli_reference_is_current():
    assert REFERENCE.exists(), f"docs/cli.md is missing; run `{REGENERATE}`"
    assert REFERENCE.read_text() == reference(), (
        f"docs/cli.md is out of date with the argparse parser; run `{REGENERATE}` and commit it"
    )


def test_every_command_and_option_is_in_the_cli_reference():
    sections = _sections(REFERENCE.read_text())
    missing = []
    for words, parser in command_paths(build_parser()):
        name = " ".join(("appliance", *words))
        section = sections.get(name)
        if section is None:
            missing.append(f"command `{name}`")
            continue
        missing += [
            f"`{name} {option}`"
            for action in parser._actions
            if "--help" not in action.option_strings
            for option in action.option_strings
            if not re.search(rf"`[^`]*{re.escape(option)}\b", section)
        ]
    assert not missing, f"not in docs/cli.md (run `{REGENERATE}`): " + ", ".join(missing)


def test_the_generator_renders_whatever_the_parser_says():
    parser = argparse.ArgumentParser(prog="appliance", description="the top")
    parser.add_argument("--home", help="data directory")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a model")
    train.add_argument("model")
    train.add_argument("--resume", nargs="?", const="", metavar="RUN", help="continue a run")
    train.add_argument("--speed", type=float, default=7200.0, help="per second (default %(default)g)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", metavar="FILE")
    source.add_argument("--lightgbm", metavar="FILE")
    deploy = commands.add_parser("deploy", help="deploy a candidate")
    deploy.add_argument("model")
    steps = deploy.add_subparsers(metavar="ACTION")
    start = steps.add_parser("start", help="start deploying")
    start.add_argument("strategy", choices=("canary", "shadow"))

    text = reference(parser)
    found = [c.name for c in cli_reference.commands(parser)]
    assert found == ["appliance", "appliance train", "appliance deploy", "appliance deploy start"]
    assert "appliance train MODEL [--resume [RUN]] [--speed SPEED] (--onnx FILE | --lightgbm FILE)\n" in text
    assert "appliance deploy MODEL start STRATEGY\n" in text
    assert "| `--speed SPEED` | `7200` | per second (default 7200) |" in text
    assert "one of `canary`, `shadow`" in text
    assert "| [`appliance deploy start`](#appliance-deploy-start) | start deploying |" in text
    assert _links_ok({Path("cli.md"): text}) == []  # its index links reach its own headings


def test_prints_the_cli_reference(capsys):
    assert cli_reference.main([]) == 0
    assert capsys.readouterr().out == reference()


def _sections(markdown: str) -> dict[str, str]:
    """docs/cli.md's sections by command: '## `appliance data show`' → its text up to the next one."""
    parts = re.split(r"^## `([^`]+)`$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


# --- the HTTP API ---


def test_every_route_is_documented_and_every_documented_route_is_served(tmp_path):
    # Creating the app reads nothing: the data directory is opened by its lifespan, which never runs here.
    app = create_app(tmp_path / "home")
    served = {f"POST {PREFIX}{{name}}{SUFFIX}"}  # predict is answered in front of Litestar, not by a route
    for route in app.litestar.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        served |= {f"{method} {path}" for method in route.methods if method not in ("OPTIONS", "HEAD")}
    documented = set(re.findall(r"^#+ `([A-Z]+ /[^`]*)`$", HTTP_API.read_text(), flags=re.MULTILINE))
    assert not served - documented, "routes with no `### `METHOD /path`` heading in docs/http-api.md: " + ", ".join(
        sorted(served - documented)
    )
    assert not documented - served, "docs/http-api.md documents routes the app does not serve: " + ", ".join(
        sorted(documented - served)
    )


# --- the README and the links ---


def test_the_readme_is_short():
    size = len(README.read_text())
    assert size <= README_LIMIT, (
        f"README.md is {size:,} characters, over {README_LIMIT:,}: move the detail into docs/ and link it"
    )


def test_the_readme_keeps_its_two_commands():
    text = README.read_text()
    for line in (
        "scripts/up      # install (first run), then run the main job on the bundled sample and serve",
        "scripts/test    # install what the tests need (first run), then run the tests",
    ):
        assert line in text, f"the README's promise is gone: {line!r}"
        assert (ROOT / line.split()[0]).exists(), line


def test_every_relative_link_leads_somewhere():
    pages = {path: path.read_text() for path in [README, *sorted(DOCS.glob("*.md"))]}
    broken = _links_ok(pages)
    assert not broken, "links that lead nowhere: " + ", ".join(broken)


def test_the_link_check_finds_broken_links(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading, with punctuation!\n")
    text = (
        "# Page\n\n## Twice\n\n## Twice\n\n[ok](other.md#a-code-heading-with-punctuation) [ok](#twice-1)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [here](#nowhere) [out](../../outside.md)\n"
        "```\n[in a code block](ignored.md)\n```\n[web](https://example.org/x.md)\n"
    )
    assert _links_ok({page: text}, root=tmp_path) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nope (no such heading)",
        "page.md: #nowhere (no such heading)",
        "page.md: ../../outside.md (outside the repository)",
    ]


def _links_ok(pages: dict[Path, str], root: Path = ROOT) -> list[str]:
    """Every broken relative link in these Markdown pages, as 'page: target (why)'."""
    broken = []
    for page, text in pages.items():
        for target in _links(text):
            path, _, anchor = target.partition("#")
            where = f"{page.relative_to(root) if page.is_absolute() else page}: {target}"
            if not path:  # an anchor on the same page
                if anchor not in _anchors(text):
                    broken.append(f"{where} (no such heading)")
                continue
            file = (root / page).parent / path
            if not file.resolve().is_relative_to(root.resolve()):
                broken.append(f"{where} (outside the repository)")
            elif not file.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{where} (no such heading)")
    return broken


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(markdown: str) -> list[str]:
    """The relative link targets of a page, outside code blocks and code spans."""
    found = []
    for line in _prose(markdown):
        line = re.sub(r"(?<=\[)`[^`]*`(?=\])", "", line)  # a code span as a link's text is still a link
        line = re.sub(r"`[^`]*`", "", line)
        found += [t for t in LINK.findall(line) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
    return found


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lowercased, punctuation dropped, spaces to hyphens,
    a repeated one numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(markdown):
        match = re.match(r"#{1,6} (.*)", line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match[1].strip())
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _prose(markdown: str):
    """The lines of a page outside fenced code blocks."""
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("## `appliance data show`", "appliance-data-show"),
        ("### `POST /v1/models/{name}/predict`", "post-v1modelsnamepredict"),
        ("## What `scripts/up` does", "what-scriptsup-does"),
        ("### `[[features.request]]`", "featuresrequest"),
    ],
)
def test_anchors_are_githubs(heading, anchor):
    assert anchor in _anchors(heading)
