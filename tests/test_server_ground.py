"""The ground the API's HTTP protocol stands on: what ``appliance/serving/http_protocol.py`` relies on
in uvicorn's httptools protocol, none of it public API.

``HttpProtocol`` subclasses ``HttpToolsProtocol``, overrides its parser callbacks and calls through
``super()``, reads its per-connection and per-request attributes, swaps its transport, and puts a
``_DirectCycle`` where uvicorn keeps its request-response cycle. pyproject.toml pins uvicorn to the
minor version these tests passed on; before a new one is allowed, these name what moved: a missing or
reshaped method or attribute, a cycle attribute uvicorn now reads that the stand-in lacks, or a change
in how uvicorn writes an answer. The lists below are checked against http_protocol.py itself, so a new
reliance on uvicorn cannot be added without being listed here.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from collections import deque
from pathlib import Path

import httptools
import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from appliance.serving import http_protocol
from appliance.serving.http_protocol import HttpProtocol, _DirectCycle

SOURCE = Path(http_protocol.__file__)
WHERE = f"uvicorn {uvicorn.__version__}, uvicorn.protocols.http.httptools_impl"

# The methods HttpProtocol overrides and calls through super(), with the parameters it passes.
OVERRIDDEN = {
    "__init__": ("config", "server_state", "app_state", "_loop"),
    "connection_made": ("transport",),
    "connection_lost": ("exc",),
    "data_received": ("data",),
    "on_message_begin": (),
    "on_url": ("url",),
    "on_header": ("name", "value"),
    "on_headers_complete": (),
    "on_body": ("body",),
    "on_message_complete": (),
    "on_response_complete": (),
    "pause_writing": (),
    "resume_writing": (),
}
# Inherited methods it relies on uvicorn calling while a _DirectCycle stands in (graceful shutdown).
INHERITED_METHODS = {"shutdown": ()}
# uvicorn's attributes it reads (or, for transport and cycle, replaces), and what each must be.
ATTRIBUTES = {
    "loop": "the connection's event loop (set in __init__)",
    "transport": "the connection's transport (set in connection_made; replaced by the one-write wrapper)",
    "flow": "the FlowControl (set in connection_made): write_paused, read_paused, pause_reading(), resume_reading()",
    "parser": "the httptools.HttpRequestParser: get_method(), get_http_version(), should_upgrade(), "
    "should_keep_alive()",
    "pipeline": "the deque of pipelined requests waiting for the answer in progress",
    "cycle": "the current request-response cycle (None before the first request)",
    "url": "the request target as bytes (reset in on_message_begin, grown in on_url)",
    "headers": "the request's headers as (lower-case name, value) bytes pairs",
    "expect_100_continue": "whether the request sent Expect: 100-continue (set in on_header)",
    "scope": "the ASGI scope begun in on_message_begin: its 'headers' and 'client'",
    "server_state": "the ServerState: default_headers",
    "connections": "the server's set of open connections, this one's protocol in it from connection_made",
}
# Attributes of a uvicorn cycle HttpProtocol itself reads (on an ASGI cycle) or sets (on its stand-in).
CYCLE_ATTRIBUTES = {"response_started", "response_complete", "keep_alive", "disconnected", "message_event"}


def _protocol_class() -> ast.ClassDef:
    tree = ast.parse(SOURCE.read_text())
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "HttpProtocol")


def test_the_lists_here_cover_everything_http_protocol_takes_from_uvicorn():
    cls = _protocol_class()
    own = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    own |= {
        target.id
        for node in cls.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    own |= {"metrics", "predict", "max_connections"}  # set in its __init__
    read = {
        node.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    }
    supers = {
        node.func.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "super"
    }
    inherited = read - own
    assert supers == set(OVERRIDDEN), (
        f"http_protocol.HttpProtocol calls super() for {sorted(supers)}; list exactly those in OVERRIDDEN here"
    )
    assert inherited <= set(ATTRIBUTES) | set(INHERITED_METHODS), (
        f"http_protocol.HttpProtocol reads {sorted(inherited - set(ATTRIBUTES))} from uvicorn's "
        "HttpToolsProtocol: add each to ATTRIBUTES here, with a check of its shape"
    )
    imported = {
        alias.name
        for node in ast.parse(SOURCE.read_text()).body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("uvicorn")
        for alias in node.names
    }
    assert imported == {"STATUS_LINE", "HttpToolsProtocol"}, (
        f"http_protocol.py imports {sorted(imported)} from uvicorn: guard each here"
    )


@pytest.mark.parametrize("name", sorted(OVERRIDDEN) + sorted(INHERITED_METHODS))
def test_each_method_http_protocol_overrides_or_relies_on_is_there_with_its_parameters(name):
    method = HttpToolsProtocol.__dict__.get(name)
    assert callable(method), (
        f"{WHERE}: HttpToolsProtocol.{name} is gone; HttpProtocol overrides it and calls super().{name}() "
        "(or relies on uvicorn calling it): rework appliance/serving/http_protocol.py before allowing this uvicorn"
    )
    expected = {**OVERRIDDEN, **INHERITED_METHODS}[name]
    params = tuple(p for p in inspect.signature(method).parameters if p != "self")
    assert params == expected, (
        f"{WHERE}: HttpToolsProtocol.{name}{params} changed shape (HttpProtocol passes {expected}): "
        "rework appliance/serving/http_protocol.py before allowing this uvicorn"
    )


def test_status_line_is_the_table_direct_answers_are_written_with():
    table = getattr(httptools_impl, "STATUS_LINE", None)
    assert isinstance(table, dict), f"{WHERE}: STATUS_LINE is gone; HttpProtocol._send_direct writes answers with it"
    for status in (200, 400, 401, 403, 404, 413, 422, 429, 503):
        assert table.get(status, b"").startswith(f"HTTP/1.1 {status} ".encode()) and table[status].endswith(b"\r\n"), (
            f"{WHERE}: STATUS_LINE[{status}] is {table.get(status)!r}, not b'HTTP/1.1 {status} <phrase>\\r\\n' "
            "as HttpProtocol._send_direct writes it"
        )


def test_uvicorn_reads_nothing_of_a_cycle_the_direct_cycle_lacks():
    # Where HttpToolsProtocol's own code touches self.cycle (or a name it bound to it), a _DirectCycle may be there.
    # HttpProtocol calls these two through super() only for uvicorn's own cycles.
    shielded = {"on_body", "on_message_complete"}
    tree = ast.parse(textwrap.dedent(inspect.getsource(HttpToolsProtocol)))
    needed: dict[str, set[str]] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or function.name in shielded:
            continue
        aliases = {
            target.id
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "cycle"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(function):
            if not isinstance(node, ast.Attribute):
                continue
            base = node.value
            is_cycle = (
                isinstance(base, ast.Attribute)
                and base.attr == "cycle"
                and isinstance(base.value, ast.Name)
                and base.value.id == "self"
            ) or (isinstance(base, ast.Name) and base.id in aliases)
            if is_cycle:
                needed.setdefault(node.attr, set()).add(function.name)
    missing = {attr: sorted(where) for attr, where in needed.items() if attr not in _DirectCycle.__slots__}
    assert not missing, (
        f"{WHERE}: HttpToolsProtocol now reads {missing} (attribute: methods) of its cycle, which "
        "http_protocol._DirectCycle lacks: add them to the stand-in, or rework the direct predict path"
    )
    assert CYCLE_ATTRIBUTES <= set(_DirectCycle.__slots__)
    for name in shielded:
        override = next(
            node for node in _protocol_class().body if isinstance(node, ast.FunctionDef) and node.name == name
        )
        assert "_DirectCycle" in ast.unparse(override), f"HttpProtocol.{name} must keep _DirectCycle from uvicorn's"


class _Transport(asyncio.Transport):
    """Enough of a socket transport for the protocol: it records what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


BODY = b'{"ok":true}'


async def _app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def _shape(condition: bool, name: str) -> None:
    assert condition, (
        f"{WHERE}: HttpToolsProtocol.{name} is missing or changed shape; HttpProtocol relies on "
        f"it being {ATTRIBUTES[name]}: rework appliance/serving/http_protocol.py before allowing "
        "this uvicorn"
    )


def test_a_request_through_uvicorns_protocol_leaves_the_attributes_http_protocol_reads():
    async def drive() -> None:
        loop = asyncio.get_running_loop()
        config = uvicorn.Config(_app, http="httptools", log_config=None, proxy_headers=False)
        state = ServerState()
        protocol = HttpToolsProtocol(config=config, server_state=state, app_state={}, _loop=loop)
        for name in set(ATTRIBUTES) - {"url"}:  # url is first set when a message begins
            _shape(hasattr(protocol, name), name)
        _shape(protocol.loop is loop, "loop")
        _shape(protocol.cycle is None, "cycle")
        _shape(type(protocol.pipeline) is deque, "pipeline")
        _shape(isinstance(getattr(protocol.server_state, "default_headers", None), list), "server_state")
        _shape(protocol.connections is state.connections and isinstance(state.connections, set), "connections")
        parser = protocol.parser
        _shape(
            isinstance(parser, httptools.HttpRequestParser)
            and all(
                callable(getattr(parser, m, None))
                for m in ("get_method", "get_http_version", "should_upgrade", "should_keep_alive")
            ),
            "parser",
        )

        transport = _Transport()
        protocol.connection_made(transport)
        _shape(protocol.transport is transport, "transport")
        _shape(
            isinstance(getattr(protocol.flow, "write_paused", None), bool)
            and isinstance(getattr(protocol.flow, "read_paused", None), bool)
            and all(callable(getattr(protocol.flow, m, None)) for m in ("pause_reading", "resume_reading")),
            "flow",
        )
        _shape(protocol in protocol.connections, "connections")

        head = b"POST /v1/models/fraud/predict HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\nContent-Length: 2\r\n\r\n"
        protocol.data_received(head)  # the head alone: the cycle is built, its body not yet read
        for name in ATTRIBUTES:
            _shape(hasattr(protocol, name), name)
        _shape(protocol.url == b"/v1/models/fraud/predict", "url")
        _shape(protocol.headers == [(b"host", b"x"), (b"x-api-key", b"k"), (b"content-length", b"2")], "headers")
        _shape(protocol.expect_100_continue is False, "expect_100_continue")
        _shape(
            protocol.scope.get("headers") is protocol.headers and protocol.scope.get("client") == ("127.0.0.1", 50000),
            "scope",
        )
        _shape(
            parser.get_method() == b"POST"
            and parser.get_http_version() == "1.1"
            and parser.should_keep_alive()
            and not parser.should_upgrade(),
            "parser",
        )
        cycle = protocol.cycle
        _shape(type(cycle) is RequestResponseCycle, "cycle")
        lacking = sorted(a for a in CYCLE_ATTRIBUTES if not hasattr(cycle, a))
        assert not lacking, f"{WHERE}: RequestResponseCycle has no {lacking}; HttpProtocol and _DirectCycle use them"
        assert cycle.response_started is False and cycle.response_complete is False and cycle.keep_alive is True

        protocol.data_received(b"{}")
        for _ in range(100):
            if cycle.response_complete:
                break
            await asyncio.sleep(0)
        assert cycle.response_complete, f"{WHERE}: the request was not answered"
        # The one-write wrapper's premise: uvicorn writes the head (ending in a blank line), then the body.
        assert (
            len(transport.writes) == 2
            and transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
            and transport.writes[0].endswith(b"\r\n\r\n")
            and transport.writes[1] == BODY
        ), (
            f"{WHERE}: uvicorn now writes an answer as {transport.writes!r}, not a head ending in a blank line "
            "and then the body: http_protocol._OneWriteAnswers joins those two writes; rework or drop it"
        )

        protocol.shutdown()  # graceful shutdown with nothing in flight closes the connection
        assert transport.closed, f"{WHERE}: HttpToolsProtocol.shutdown no longer closes an idle connection"
        protocol.connection_lost(None)

    asyncio.run(drive())


def test_the_partial_the_server_config_passes_is_taken_as_the_protocol_class():
    # server_config passes functools.partial(HttpProtocol, metrics=..., predict=...) as http=.
    from functools import partial

    factory = partial(HttpProtocol, metrics=None, predict=None, max_connections=1)
    config = uvicorn.Config(_app, http=factory, log_config=None)
    config.load()
    assert config.http_protocol_class is factory, (
        f"{WHERE}: uvicorn.Config no longer takes a protocol factory as http=; appliance.serving.server.server_config "
        "passes one"
    )
    created = inspect.getsource(uvicorn.Server.startup)
    assert all(f"{k}=" in created for k in ("config", "server_state", "app_state", "_loop")), (
        "uvicorn.Server.startup no longer builds the protocol with config=, server_state=, app_state=, _loop=, "
        "as HttpProtocol.__init__ passes them on"
    )
