"""gs:// datasets against a real GCS emulator (fake-gcs-server) on 127.0.0.1; never the internet."""

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest
from fixtures.gcs import gcs_emulator  # noqa: F401  (pytest fixture)
from fixtures.recordings import make_dataset

from gsenet.checks import prepare_data
from gsenet.cli import main
from gsenet.config import DataConfig
from gsenet.data import SegmentDataset
from gsenet.errors import StorageError
from gsenet.storage import (
    _checksum_ok,
    gcs_client,
    open_storage_filesystem,
    resolve_data_root,
    sync_gcs_prefix,
    upload_directory,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("local") / "data", n_per_split=2, seconds=1.2, n_mics=2, seed=1)


@pytest.fixture(scope="module")
def bucket(gcs_emulator, local_data):  # noqa: F811
    gcs_client().create_bucket("recordings")
    assert upload_directory(local_data, "gs://recordings/sets/v1") == 24  # 6 recordings x 4 files
    return "recordings"


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sync_mirrors_the_prefix_and_a_rerun_downloads_nothing(bucket, local_data, tmp_path):
    first = sync_gcs_prefix("gs://recordings/sets/v1", tmp_path)
    assert first.objects == 24 and first.downloaded == 24
    assert files_of(first.path) == files_of(local_data)
    again = sync_gcs_prefix("gs://recordings/sets/v1/", tmp_path)
    assert again.path == first.path and again.downloaded == 0
    assert resolve_data_root("gs://recordings/sets/v1", tmp_path) == first.path


def test_changed_and_deleted_objects_follow_the_bucket(bucket, local_data, tmp_path):
    uri = "gs://recordings/sets/changing"
    upload_directory(local_data / "val", uri)
    view = sync_gcs_prefix(uri, tmp_path).path
    client = gcs_client()
    blob = client.bucket(bucket).blob("sets/changing/rec_000/channel_1.wav")
    blob.upload_from_string(b"new bytes")  # a new generation
    client.bucket(bucket).blob("sets/changing/rec_001/channel_3.wav").delete()
    result = sync_gcs_prefix(uri, tmp_path)
    assert result.downloaded == 1 and result.objects == 7
    assert (view / "rec_000" / "channel_1.wav").read_bytes() == b"new bytes"
    assert not (view / "rec_001" / "channel_3.wav").exists()
    # The cache is keyed by generation: the old blob is still there beside the new one.
    assert (
        len(list((tmp_path / "gcs" / "blobs" / bucket / "sets" / "changing" / "rec_000").glob("channel_1.wav.g*"))) == 2
    )


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_an_interrupted_download_resumes_with_only_the_missing_objects(bucket, tmp_path):
    result = sync_gcs_prefix("gs://recordings/sets/v1", tmp_path)
    blobs = sorted((tmp_path / "gcs" / "blobs").rglob("*.g*"))
    # Simulate a crash: two objects never finished (a stale partial file, no final blob, no view entry).
    dead = _dead_pid()
    for blob in blobs[:2]:
        blob.rename(blob.with_name(f".{blob.name}.partial-{dead}"))
    (result.path / "train" / "rec_000" / "channel_1.wav").unlink()
    resumed = sync_gcs_prefix("gs://recordings/sets/v1", tmp_path)
    assert resumed.downloaded == 2 and (result.path / "train" / "rec_000" / "channel_1.wav").is_file()
    assert not [p for p in resumed.path.rglob("*") if ".partial" in p.name]  # never visible in the view
    assert not list((tmp_path / "gcs" / "blobs").rglob("*.partial-*"))  # the dead process's leftovers are gone


def test_workers_on_a_node_share_the_cache_without_duplicate_downloads(bucket, tmp_path):
    code = "import sys; from gsenet.storage import sync_gcs_prefix; print(sync_gcs_prefix(*sys.argv[1:]).downloaded)"
    args = [sys.executable, "-c", code, "gs://recordings/sets/v1", str(tmp_path)]
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(3)]  # env has the emulator
    downloaded = [int(w.communicate(timeout=120)[0]) for w in workers]
    assert sorted(downloaded) == [0, 0, 24]


def test_datasets_and_prepare_data_read_gs_paths(bucket, tmp_path):
    cfg = DataConfig(path="gs://recordings/sets/v1", cache_dir=str(tmp_path), segment_seconds=1.0)
    root, report = prepare_data(cfg, 16000)
    assert report.ok and report.summary["splits"]["train"]["recordings"] == 2
    item = SegmentDataset(root / "train", cfg, 16000, length=2)[0]
    assert item["beam"].shape == (16000,)


def test_cli_checks_a_gs_dataset(bucket, tmp_path, capsys):
    code = main(["data", "check", "gs://recordings/sets/v1", "data.segment_seconds=1", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "gs://recordings/sets/v1 (cached at" in out and out.rstrip().endswith("OK")
    assert main(["data", "fetch", "gs://recordings/sets/v1", "--cache-dir", str(tmp_path)]) == 0
    assert "24 objects (0 downloaded now)" in capsys.readouterr().out  # the check above filled the cache


@pytest.mark.parametrize(
    "uri, words",
    [
        ("gs://no-such-bucket/x", "not found"),
        ("gs://recordings/no/such/prefix", "no objects under this prefix"),
        ("gs:///x", "names no bucket"),
    ],
)
def test_unreadable_bucket_or_prefix(bucket, tmp_path, capsys, uri, words):
    with pytest.raises(StorageError, match=words):
        sync_gcs_prefix(uri, tmp_path, timeout=10)
    assert main(["data", "check", uri, "--cache-dir", str(tmp_path)]) == 1
    assert uri in capsys.readouterr().err


def test_unreachable_endpoint_fails_fast_with_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(StorageError, match=r"cannot reach the emulator at http://127\.0\.0\.1:9"):
        sync_gcs_prefix("gs://recordings/sets/v1", tmp_path, timeout=2)
    code = main(["data", "check", "gs://recordings/sets/v1", "data.gcs_timeout_s=2", "--cache-dir", str(tmp_path)])
    assert code == 1 and "cannot reach the emulator" in capsys.readouterr().err


@pytest.fixture
def rejecting_token_server():
    """A local OAuth token endpoint that rejects every request, as Google does for a revoked key."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()
    server.server_close()


def test_wrong_credentials_are_reported(tmp_path, monkeypatch, rejecting_token_server):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file = tmp_path / "revoked-key.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "0",
                "private_key": pem.decode(),
                "client_email": "revoked@test-project.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": rejecting_token_server,  # local: the request never leaves the machine
            }
        )
    )
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with pytest.raises(StorageError, match="credentials were rejected.*invalid_grant"):
        sync_gcs_prefix("gs://recordings/sets/v1", tmp_path, timeout=5)


def test_missing_credentials_exit_1_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true")
    run = subprocess.run(
        [sys.executable, "-m", "gsenet", "data", "check", "gs://recordings/x", "--cache-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "no Google Cloud credentials found" in run.stderr and "application-default login" in run.stderr
    assert "Traceback" not in run.stderr


def test_checksums_are_verified(tmp_path):
    import base64
    import hashlib

    path = tmp_path / "x"
    path.write_bytes(b"hello")
    md5 = base64.b64encode(hashlib.md5(b"hello").digest()).decode()
    assert _checksum_ok(path, None, md5) and not _checksum_ok(
        path, None, md5.replace(md5[0], "A" if md5[0] != "A" else "B")
    )
    assert _checksum_ok(path, "mnG7TA==", None)  # crc32c("hello") as GCS lists it
    assert not _checksum_ok(path, "AAAAAA==", None)


def test_ray_storage_filesystem_on_the_emulator(bucket):
    fs, path = open_storage_filesystem("gs://recordings/runs/exp1")
    assert path == "recordings/runs/exp1"
    with fs.open_output_stream(f"{path}/checkpoint/state.json") as out:
        out.write(b'{"epoch": 3}')
    with fs.open_input_stream(f"{path}/checkpoint/state.json") as stream:
        assert json.loads(stream.read()) == {"epoch": 3}
    local_fs, local_path = open_storage_filesystem("relative/runs")
    assert local_path == os.path.abspath("relative/runs") and local_fs.type_name == "local"
