"""Settings: environment over TOML file over defaults; `pixseek config` shows the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixseek.config import load_settings
from pixseek.errors import UserError


def test_defaults_env_and_toml_precedence(tmp_path: Path):
    toml = tmp_path / "pixseek.toml"
    toml.write_text(
        '[pixseek]\nclip_model = "ViT-L-14"\nbatch_size = 8\nqdrant_url = "http://q:6333"\n'
    )
    settings = load_settings({"PIXSEEK_CONFIG": str(toml), "PIXSEEK_BATCH_SIZE": "64"})
    assert settings.clip_model == "ViT-L-14"  # from the file
    assert settings.batch_size == 64  # env wins over the file
    assert settings.qdrant_url == "http://q:6333"
    assert settings.clip_pretrained == "laion2b_s34b_b79k"  # default


def test_data_dir_toml_is_read_and_templates_parse(tmp_path: Path):
    (tmp_path / "pixseek.toml").write_text('prompt_templates = ["{}", "art of {}"]\n')
    settings = load_settings({"PIXSEEK_DATA_DIR": str(tmp_path)})
    assert settings.prompt_templates == ("{}", "art of {}")
    assert settings.store_dir == tmp_path / "collections"
    off = load_settings({"PIXSEEK_DATA_DIR": str(tmp_path), "PIXSEEK_PROMPT_TEMPLATES": ""})
    assert off.prompt_templates == ()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PIXSEEK_BATCH_SIZE": "many"}, "invalid value"),
        ({"PIXSEEK_BATCH_SIZE": "0"}, "at least 1"),
        ({"PIXSEEK_CONFIG": "/nonexistent.toml"}, "does not exist"),
    ],
)
def test_bad_settings_are_user_errors(env, fragment):
    with pytest.raises(UserError, match=fragment):
        load_settings(env)


def test_unknown_key_and_bad_toml(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("clip_modle = 1\n")
    with pytest.raises(UserError, match="unknown setting"):
        load_settings({"PIXSEEK_CONFIG": str(bad)})
    bad.write_text("clip_model = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_settings({"PIXSEEK_CONFIG": str(bad)})


def test_config_command_hides_secrets(cli, pixseek_env, monkeypatch):
    monkeypatch.setenv("PIXSEEK_QDRANT_API_KEY", "s3cret")
    code, out, _ = cli("config")
    shown = json.loads(out)
    assert code == 0 and shown["qdrant_api_key"] == "***"
    assert shown["data_dir"] == pixseek_env["PIXSEEK_DATA_DIR"]
