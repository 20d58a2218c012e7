"""No input yields a 5xx: property-based tests of both endpoints of ``valine serve``, over HTTP.

One service (with the stand-ins) serves the whole module; Hypothesis sends it signed
arbitrary JSON, real ``@octokit/webhooks-examples`` payloads and Discord-shaped
interactions with keys deleted and values replaced, bodies nested up to 100,000 levels,
odd header bytes and casings, wrong methods and paths. Every answer must be one of the
statuses the endpoints promise, and the service's log must never show the catch-all.
"""

from __future__ import annotations

import json
import random
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from helpers import FUZZ_SCALE, discord_headers, github_headers, interaction
from valine.testing import payloads
from valine.testing.world import REPO
from world import World, start_world, stop_world

#: What each endpoint may answer to a correctly signed body (never a 5xx).
DISCORD_SIGNED = {200, 400}
GITHUB_SIGNED = {200, 202, 400}
#: What any request at all may get (401 bad signature, 404/405 routing, 413 too large;
#: 400 also comes from the HTTP parser itself for bytes HTTP does not allow).
ANY_REQUEST = {200, 202, 400, 401, 404, 405, 413}
CATCH_ALL = ("unhandled error", "internal error")
#: ``VALINE_FUZZ_SCALE=50 pytest tests/e2e/test_hardened_endpoints.py`` sends 50 times the
#: examples ``make test`` sends (about 40,000 requests instead of 800).
SCALE = FUZZ_SCALE

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    signing_key: SigningKey,
    webhook_examples: dict[str, list[dict[str, Any]]],
) -> Iterator[World]:
    world = start_world(tmp_path_factory.mktemp("hardened"), signing_key, webhook_examples)
    try:
        yield world
    finally:
        stop_world(world)
        log = world.service.logs()
        assert not any(marker in log for marker in CATCH_ALL), "a catch-all was reached"


def post_discord(world: World, body: bytes) -> tuple[int, bytes]:
    return world.service.request("POST", "/discord", body, discord_headers(world.key, body))


def post_github(world: World, event: str, body: bytes) -> tuple[int, bytes]:
    return world.service.request("POST", "/github/webhook", body, github_headers(body, event))


# --- mutations of a real document ----------------------------------------------------------


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``document`` (keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    items = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else ()
    )
    for key, value in items:
        found.append((*prefix, key))
        found.extend(_paths(value, (*prefix, key)))
    return found


@st.composite
def mutated(draw: st.DrawFn, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """A deep copy of one of ``documents`` with a few keys deleted and values replaced."""
    document = json.loads(json.dumps(draw(st.sampled_from(documents))))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return document


def discord_documents() -> list[dict[str, Any]]:
    """Interactions shaped as Discord's schema describes them: every type the bot takes."""
    return [
        payloads.interaction(1),
        payloads.interaction(2, "status", {"run_id": "r20990101-abcdef"}, roles=("7",)),
        payloads.interaction(2, "plan", roles=("7",)),
        payloads.interaction(2, "help"),
        payloads.interaction(3, custom_id="approve:r20990101-abcdef"),
        payloads.interaction(4, "status", {"run_id": "r2"}, focused="run_id"),
        {**payloads.interaction(2, "status"), "member": None, "user": {"id": "9", "username": "x"}},
    ]


def fresh_id(document: dict[str, Any]) -> dict[str, Any]:
    """The document with a new interaction id (so no answer is "already handled")."""
    if isinstance(document.get("id"), str):
        document["id"] = str(uuid.uuid4().int)[:18]
    return document


# --- the properties ------------------------------------------------------------------------


@settings(max_examples=150 * SCALE)
@given(document=JSON)
def test_arbitrary_signed_json_never_gets_a_5xx(served: World, document: Any) -> None:
    body = json.dumps(document).encode()
    assert post_discord(served, body)[0] in DISCORD_SIGNED
    assert post_github(served, "pull_request", body)[0] in GITHUB_SIGNED


@settings(max_examples=200 * SCALE)
@given(data=st.data())
def test_mutated_real_webhook_payloads_never_get_a_5xx(
    served: World, webhook_examples: dict[str, list[dict[str, Any]]], data: st.DataObject
) -> None:
    event = data.draw(st.sampled_from(["pull_request", "check_suite", "issues", "issue_comment"]))
    document = data.draw(mutated(webhook_examples[event]))
    status, answer = post_github(served, event, json.dumps(document).encode())
    assert status in GITHUB_SIGNED, answer
    if status == 400:
        assert json.loads(answer)["error"]  # names the field


@settings(max_examples=200 * SCALE)
@given(document=mutated(discord_documents()))
def test_mutated_interactions_never_get_a_5xx(served: World, document: dict[str, Any]) -> None:
    status, answer = post_discord(served, json.dumps(fresh_id(document)).encode())
    assert status in DISCORD_SIGNED, answer
    reply = json.loads(answer)
    if status == 200:
        assert reply["type"] in (1, 4, 5, 7, 8)
    else:
        assert ":" in reply["error"]  # "data.options[0].value: must be ..."


@pytest.mark.parametrize("depth", [33, 1_000, 100_000])
def test_deep_nesting_is_a_400(served: World, depth: int) -> None:
    """A Discord body is held to 32 levels everywhere; a webhook in the fields its event's
    reader reads (the rest is skipped unbuilt, up to msgspec's ~1,000 levels)."""
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        deep = opener * depth + b"1" + closer * depth
        refused = [
            post_discord(served, b'{"x":' + deep + b"}"),
            post_github(served, "issues", b'{"action":' + deep + b"}"),
        ]
        unread = post_github(served, "issues", b'{"x":' + deep + b"}")
        if depth < 1_000:
            assert unread[0] == 202, unread  # skipped: here, no repository is served
        else:
            refused.append(unread)
        for status, answer in refused:
            assert status == 400, answer
            assert "nested deeper" in json.loads(answer)["error"]


def test_lone_surrogates_and_non_utf8_are_a_400(served: World) -> None:
    for body in (b'{"id": "\\ud800"}', b'{"\\udfff": 1}', b'{"a": "\xed\xa0\x80"}', b"\xff{}"):
        assert post_discord(served, body)[0] == 400
        assert post_github(served, "issues", body)[0] == 400


def raw_request(world: World, head: bytes, body: bytes = b"") -> int:
    """Send raw bytes (headers HTTP clients refuse to build); the status line's code."""
    with socket.create_connection(("127.0.0.1", world.service.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


HEADER_BYTES = st.binary(max_size=140).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)


def _casing(name: str, rng: random.Random) -> bytes:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name).encode()


@settings(max_examples=150 * SCALE)
@given(signature=HEADER_BYTES, timestamp=HEADER_BYTES, hub=HEADER_BYTES, seed=st.integers())
def test_odd_header_bytes_and_casings_get_401_or_400(
    served: World, signature: bytes, timestamp: bytes, hub: bytes, seed: int
) -> None:
    rng = random.Random(seed)
    body = interaction(kind=1)
    length = b"Content-Length: %d" % len(body)
    discord = (
        b"POST /discord HTTP/1.1\r\nHost: x\r\n"
        + _casing("x-signature-ed25519", rng) + b": " + signature + b"\r\n"
        + _casing("x-signature-timestamp", rng) + b": " + timestamp + b"\r\n"
        + length
    )  # fmt: skip
    assert raw_request(served, discord, body) in {400, 401}
    github = (
        b"POST /github/webhook HTTP/1.1\r\nHost: x\r\n"
        + _casing("x-hub-signature-256", rng) + b": sha256=" + hub + b"\r\n"
        + _casing("x-github-event", rng) + b": issues\r\n"
        + length
    )  # fmt: skip
    assert raw_request(served, github, body) in {400, 401}


def test_a_non_ascii_hub_signature_is_a_401(served: World) -> None:
    body = b'{"zen": "x"}'
    for value in ("sha256=é" + "0" * 63, "sha256=\u00ff" * 9, "é"):
        headers = {**github_headers(body, "ping"), "x-hub-signature-256": value}
        # http.client sends str headers as latin-1: non-ASCII bytes on the wire. (The one
        # header only: a valid signature beside it is a request that is signed.)
        assert served.service.request("POST", "/github/webhook", body, headers)[0] == 401


@settings(max_examples=100 * SCALE)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST", "HEAD"]),
    path=st.sampled_from(["/discord", "/github/webhook", "/healthz", "/", "/discord/x"])
    | st.text("abcdefghijklmnopqrstuvwxyz0123456789/-._~%", max_size=40).map(lambda p: "/" + p),
    body=st.binary(max_size=2000),
)
def test_wrong_methods_and_paths_are_decided_before_the_body(
    served: World, method: str, path: str, body: bytes
) -> None:
    routes = {"/discord": "POST", "/github/webhook": "POST", "/healthz": "GET"}
    status, _ = served.service.request(method, path, body)
    if path not in routes:
        assert status == 404
    elif method != routes[path]:
        assert status == 405
    else:
        assert status in ANY_REQUEST


def test_a_big_body_to_a_bodiless_route_is_405_and_unknown_path_404(served: World) -> None:
    """The client sends its whole body before reading: it gets the answer, not a broken
    pipe (the body is read and dropped, as for a 413). Repeated: the pipe broke only when
    the server's answer and close beat the client's last write."""
    big = b"x" * (2 << 20)
    for _ in range(10):
        assert served.service.request("POST", "/healthz", big)[0] == 405
        assert served.service.request("POST", "/nowhere", big)[0] == 404
    assert served.service.request("POST", "/discord", big)[0] == 413


def _http_answer(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 answer (status line, headers, a body of its Content-Length)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _webhook_head(body: bytes, framing: bytes, delivery: str) -> bytes:
    headers = github_headers(body, "pull_request", delivery)
    lines = [b"POST /github/webhook HTTP/1.1", b"Host: x", framing]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_bodies_in_pieces_chunked_or_not_are_read_whole_on_one_connection(
    served: World,
) -> None:
    """A declared body is read whole (however it is split on the wire), a chunked one as
    it arrives; several deliveries on one keep-alive connection each get their answer."""
    document = payloads.pull_request(REPO, "opened", 4242, "a" * 40, "x" * 9000)
    body = json.dumps(document).encode()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with socket.create_connection(("127.0.0.1", served.service.port), timeout=10) as sock:
        declared = _webhook_head(body, b"Content-Length: %d" % len(body), ids[0])
        for piece in (declared + body[:100], body[100:5000], body[5000:]):
            sock.sendall(piece)  # in three writes: the server must wait for all of it
        first = _http_answer(sock)
        chunked = _webhook_head(body, b"Transfer-Encoding: chunked", ids[1])
        pieces = [body[i : i + 999] for i in range(0, len(body), 999)]
        sock.sendall(
            chunked + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        )
        second = _http_answer(sock)
        sock.sendall(_webhook_head(body, b"Content-Length: %d" % len(body), ids[0]) + body)
        redelivered = _http_answer(sock)
    assert first.startswith(b"HTTP/1.1 202") and ids[0].encode() in first
    assert second.startswith(b"HTTP/1.1 202") and ids[1].encode() in second
    assert redelivered.startswith(b"HTTP/1.1 200") and b"duplicate" in redelivered


def test_a_chunked_body_over_the_limit_is_a_413(served: World) -> None:
    body = b"x" * ((1 << 20) + 1)  # the Discord route's limit is 1 MiB
    head = b"POST /discord HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    wire = head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.service.port), timeout=10) as sock:
        sock.sendall(wire)
        assert _http_answer(sock).startswith(b"HTTP/1.1 413")
