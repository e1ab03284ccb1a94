"""Errors carry their own exit code and HTTP status; the CLI and the server both read them from the class."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from infuse.cli import app
from infuse.errors import EmbedderMismatchError, InfuseError, WorkspaceBusyError, WorkspaceNotFoundError
from infuse.models import GenerationConfig, ModelError, ModelServerError
from infuse.models.openai_backend import OpenAICompatibleModel


class _Interrupted(InfuseError):
    exit_code = 7
    http_status = 418


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_status_table() -> None:
    assert (InfuseError.exit_code, InfuseError.http_status) == (1, 400)
    assert WorkspaceBusyError.http_status == 409 and EmbedderMismatchError.http_status == 409
    assert WorkspaceNotFoundError.http_status == 404
    assert issubclass(ModelServerError, ModelError) and ModelServerError.http_status == 502


@pytest.mark.parametrize(("error", "code"), [(_Interrupted("stopped by the test"), 7), (WorkspaceBusyError("busy"), 1)])
def test_cli_exit_code_comes_from_the_error_class(
    monkeypatch: pytest.MonkeyPatch, error: InfuseError, code: int
) -> None:
    def fail(*_, **__):
        raise error

    monkeypatch.setattr("infuse.cli.kb.open_workspace", fail)
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == code
    assert result.stderr.strip() == f"error: {error}" and "Traceback" not in result.output


def test_unreachable_model_server_is_a_model_server_error() -> None:
    model = OpenAICompatibleModel("m", f"http://127.0.0.1:{_free_port()}/v1", max_retries=0, timeout=5)
    with pytest.raises(ModelServerError, match="cannot connect") as caught:
        model.generate("hi")
    assert caught.value.http_status == 502


class _Model:
    name = "plain"

    def stream(self, messages, config):  # the server streams (and cancels) every generation
        raise ModelServerError("cannot connect to http://127.0.0.1:9/v1: is the server running?")


class _Pipeline:
    """Just what create_app uses: a model, generation defaults and stream()."""

    model = _Model()
    generation = GenerationConfig()

    def stream(self, question, history=None, generation=None, guidance=""):
        raise WorkspaceBusyError("the workspace is locked by another process (an ingest is running); try again")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    import uvicorn

    from infuse.server import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(_Pipeline()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("model", "status", "kind", "words"),
    [
        ("infuse-rag", 409, "invalid_request_error", "locked by another process"),  # busy workspace: not a 400
        ("plain", 502, "server_error", "cannot connect"),  # model server down: a 502
    ],
)
def test_server_status_comes_from_the_error_class(
    base_url: str, model: str, status: int, kind: str, words: str
) -> None:
    code, body = _post(
        f"{base_url}/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert code == status
    assert body["error"]["type"] == kind and body["error"]["code"] == "infuse_error"
    assert words in body["error"]["message"] and "Traceback" not in body["error"]["message"]
