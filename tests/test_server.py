"""`infuse serve` as a real process, driven by the official openai SDK and by infuse's openai backend."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import write_corpus
from infuse.models import GenerationConfig, LoglikelihoodRequest, ModelError
from infuse.models.openai_backend import OpenAICompatibleModel
from infuse.models.transformers_backend import TransformersModel
from infuse.server import RAG_MODEL_ID
from infuse.workspace import Workspace

API_KEY = "test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_chat_llama_dir: str):
    root = tmp_path_factory.mktemp("serve")
    Workspace.open(root / "ws", create=True).ingest([write_corpus(root / "corpus")])
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infuse.cli",
            "-w",
            str(root / "ws"),
            "serve",
            "--model",
            tiny_chat_llama_dir,
            "--port",
            str(port),
        ],
        env={
            **os.environ,
            "INFUSE_API_KEY": API_KEY,
            "INFUSE_MODEL__MAX_NEW_TOKENS": "8",
            "INFUSE_SERVER__ACCESS_LOG": "logs/access.log",  # relative: inside the workspace
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"infuse serve did not start: {process.stdout.read().decode()[-2000:]}")
        time.sleep(0.2)
    yield base_url, Path(tiny_chat_llama_dir).name, root / "ws"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0], api_key=API_KEY, max_retries=0)


def test_models_lists_rag_and_plain(client: openai.OpenAI, server) -> None:
    assert [m.id for m in client.models.list().data] == [RAG_MODEL_ID, server[1]]


def test_chat_with_rag_returns_citations_field_and_usage(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=RAG_MODEL_ID, messages=[{"role": "user", "content": "How often are API keys rotated?"}], max_tokens=5
    )
    assert response.object == "chat.completion" and response.usage.completion_tokens == 5
    assert response.choices[0].finish_reason == "length"  # cut off by max_tokens
    assert isinstance(response.choices[0].message.content, str)
    assert isinstance(response.model_extra["citations"], list)


def test_chat_streaming_matches_non_streaming(client: openai.OpenAI, server) -> None:
    messages = [{"role": "user", "content": "Say something about backups"}]
    whole = client.chat.completions.create(model=server[1], messages=messages, max_tokens=8)
    chunks = list(
        client.chat.completions.create(
            model=server[1], messages=messages, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and "citations" in finals[0].model_extra


def test_rag_chat_streams_too(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=RAG_MODEL_ID,
            messages=[{"role": "user", "content": "How often are API keys rotated?"}],
            max_tokens=4,
            stream=True,
        )
    )
    # Cut off by max_tokens: "length", as OpenAI says (it said "stop" before issue 13).
    assert chunks[-1].choices[0].finish_reason == "length"
    assert isinstance(chunks[-1].model_extra["citations"], list)


def test_completions_with_echo_and_logprobs(client: openai.OpenAI, server) -> None:
    response = client.completions.create(
        model=server[1], prompt="The quick brown fox", max_tokens=0, echo=True, logprobs=1
    )
    choice = response.choices[0]
    assert choice.text == "The quick brown fox"
    logprobs = choice.logprobs
    assert logprobs.token_logprobs[0] is None and all(lp < 0 for lp in logprobs.token_logprobs[1:])
    assert "".join(logprobs.tokens) == "The quick brown fox" and logprobs.text_offset[0] == 0


def test_invalid_requests_get_4xx_with_a_message(client: openai.OpenAI, server) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=server[1], messages=[{"role": "user", "content": "hi"}], temperature=5)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=server[1], messages=[])
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.chat.completions.create(model="gpt-nothing", messages=[{"role": "user", "content": "hi"}])


def test_openai_backend_loglikelihood_equals_transformers(server, tiny_chat_llama_dir: str) -> None:
    remote = OpenAICompatibleModel(server[1], server[0], api_key=API_KEY)
    local = TransformersModel.load(tiny_chat_llama_dir)
    requests = [
        LoglikelihoodRequest("The quick brown", " fox jumps"),
        LoglikelihoodRequest("Backups are kept for ", "35 days."),
        LoglikelihoodRequest("Question: how often are API keys rotated? Answer:", " every 90 days"),
    ]
    remote_scores = remote.loglikelihood(requests)
    local_scores = local.loglikelihood(requests)
    for r, lo in zip(remote_scores, local_scores):
        assert r.logprob == pytest.approx(lo.logprob, abs=1e-4) and r.n_tokens == lo.n_tokens
        assert r.is_greedy == lo.is_greedy


def test_openai_backend_generates_like_the_local_model(server, tiny_chat_llama_dir: str) -> None:
    remote = OpenAICompatibleModel(server[1], server[0], api_key=API_KEY)
    local = TransformersModel.load(tiny_chat_llama_dir)
    config = GenerationConfig(max_new_tokens=6)
    assert remote.generate("API keys are", config).text == local.generate("API keys are", config).text
    messages = [{"role": "user", "content": "hello"}]
    streamed = remote.stream(messages, config)
    assert "".join(streamed) == local.generate(messages, config).text
    assert streamed.result.completion_tokens == local.generate(messages, config).completion_tokens


def test_openai_backend_errors_are_clear(server) -> None:
    with pytest.raises(ModelError, match="API key"):
        OpenAICompatibleModel(server[1], server[0], api_key="wrong", max_retries=0).generate("hi")
    with pytest.raises(ModelError, match=f"not found.*{RAG_MODEL_ID}"):
        OpenAICompatibleModel("no-such-model", server[0], api_key=API_KEY, max_retries=0).generate("hi")
    with pytest.raises(ModelError, match="cannot connect"):
        OpenAICompatibleModel("m", f"http://127.0.0.1:{_free_port()}/v1", max_retries=0).generate("hi")


def test_serve_writes_the_access_log_named_in_settings(client: openai.OpenAI, server) -> None:
    client.models.list()
    lines = (server[2] / "logs" / "access.log").read_text().splitlines()
    assert any(" GET /v1/models 200 " in line for line in lines)
    assert API_KEY not in "\n".join(lines)
