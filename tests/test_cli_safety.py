"""Nothing silent on the command line: drop never deletes without asking, config masks secrets."""

from __future__ import annotations

import json

import pytest

from pixseek.config import load_settings, mask_secrets


def test_drop_without_yes_refuses_when_it_cannot_ask(cli, pixseek_env, tmp_path):
    from pixseek.store import open_store

    store = open_store(load_settings())
    store.create_collection("keep", {"clip": 4}, {})
    store.close()
    code, out, err = cli("collections", "drop", "keep")  # CliRunner's stdin is not a terminal
    assert code == 2 and out == ""
    assert "stdin is not a terminal" in err and "--yes" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = cli("collections", "--json")
    assert json.loads(out)["name"] == "keep"
    code, out, _ = cli("collections", "drop", "keep", "--yes")
    assert code == 0 and "dropped keep" in out


SECRETS = {
    "PIXSEEK_BROKER_URL": "redis://:brokerpw@redis:6379/0",
    "PIXSEEK_RESULT_BACKEND": "rediss://user:backendpw@cache:6380/1?ssl_cert_reqs=none",
    "PIXSEEK_QDRANT_URL": "https://qdrant.example:6333/?api_key=urlkey",
    "PIXSEEK_QDRANT_API_KEY": "qdrantkey",
    "PIXSEEK_API_KEY": "apikey",
}


def test_config_masks_every_credential(cli, pixseek_env, monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    code, out, err = cli("config")
    assert code == 0, err
    for secret in ("brokerpw", "backendpw", "urlkey", "qdrantkey", "apikey"):
        assert secret not in out
    shown = json.loads(out)
    assert shown["broker_url"] == "redis://:***@redis:6379/0"
    assert shown["result_backend"] == "rediss://user:***@cache:6380/1?ssl_cert_reqs=none"
    assert shown["qdrant_url"] == "https://qdrant.example:6333/?api_key=***"
    assert shown["qdrant_api_key"] == "***" and shown["api_key"] == "***"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:p@ss@h:6379/0", "redis://:***@h:6379/0"),
        ("amqp://u:p@h//", "amqp://u:***@h//"),
        ("http://h:6333", "http://h:6333"),
        ("redis://h:6379/0?password=x&db=1", "redis://h:6379/0?password=***&db=1"),
    ],
)
def test_mask_secrets(url, masked):
    assert mask_secrets(url) == masked


def test_migrate_command_brings_an_old_collection_up_to_date(cli, pixseek_env, monkeypatch):
    # In-process text search without the background ONNX export: that export's thread swaps
    # sys.stdout (torch.onnx) and leaves later CliRunner calls in this process printing nowhere.
    monkeypatch.setenv("PIXSEEK_TEXT_BACKEND", "torch")
    from pathlib import Path

    from pixseek.store import PointRecord
    from pixseek.store.edge import EdgeStore, close_shards

    root = Path(pixseek_env["PIXSEEK_DATA_DIR"]) / "collections"
    store = EdgeStore(root)
    store.create_collection("old", {"clip": 32}, {})  # schema 1: no payload_schema, no label_keys
    point = PointRecord(
        "00000000-0000-0000-0000-000000000001",
        {"clip": [1.0] + [0.0] * 31},
        {"root": "/x", "source": "a.jpg", "labels": ["Shih-Tzu"]},
    )
    store.upsert("old", [point])
    close_shards(root)
    code, out, err = cli("collections", "migrate", "old")
    assert code == 0 and "payload schema 1 -> 2 (1 points)" in out, err
    code, out, _ = cli("collections", "migrate", "old")
    assert code == 0 and "nothing to migrate" in out
    code, out, err = cli("search", "dog", "-c", "old", "-w", "label=shih-tzu", "--json")
    assert code == 0, err
    assert [json.loads(line)["payload"]["labels"] for line in out.splitlines()] == [["Shih-Tzu"]]
