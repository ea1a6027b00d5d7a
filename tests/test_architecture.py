"""The shape of the code: import layers, one installed namespace, commands that start light."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "open_clip", "torchvision", "diffusers", "transformers")


def test_no_import_crosses_a_layer_upwards():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_layers.py")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_only_pixseek_lands_in_site_packages(tmp_path):
    source = tmp_path / "src"  # build a copy: setuptools writes build/ beside pyproject.toml
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("pixseek", "ingest", "search", "worker", "evaluation", "api"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("pixseek-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"pixseek"}
    for stage in ("ingest", "search", "worker", "evaluation", "api"):
        assert f"pixseek/{stage}/__init__.py" in names
    assert "pixseek/api/static/index.html" in names


def _heavy_modules_after(args: list[str], env: dict[str, str]) -> tuple[list[str], str]:
    probe = (
        "import json, sys\n"
        "from pixseek.cli import main\n"
        "try:\n"
        f"    main({args!r}, standalone_mode=False)\n"
        "except BaseException as exc:\n"
        "    print('exit:', type(exc).__name__, exc, file=sys.stderr)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    return json.loads(run.stdout.strip().splitlines()[-1]), run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["config"],
        ["collections"],
        ["collections", "--json"],
        ["jobs", "status", "7b1c3f0e-3d2a-4c59-9f1e-2a6f4c1d9e11"],
        ["jobs", "--help"],
    ],
)
def test_commands_without_a_model_do_not_import_torch(args, tmp_path):
    env = {
        **os.environ,
        "PIXSEEK_DATA_DIR": str(tmp_path),
        "PIXSEEK_BROKER_URL": "redis://127.0.0.1:6379/15",
        "HF_HUB_OFFLINE": "1",
    }
    heavy, stderr = _heavy_modules_after(args, env)
    assert heavy == [], f"{args} imported {heavy}; {stderr}"


def _layout_table() -> dict[str, str]:
    """README's Layout table: folder -> the text of its row."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`").rstrip("/")] = cells[1]
    return rows


def test_readme_layout_table_matches_the_tree():
    import re

    rows = _layout_table()
    for folder in ("pixseek", "pixseek/models", "pixseek/store", "pixseek/cli", "ingest", "search"):
        assert folder in rows, f"README layout table has no row for {folder}/"
    for folder in ("worker", "evaluation", "api"):
        assert folder in rows, f"README layout table has no row for {folder}/"
    for folder, text in rows.items():
        if folder in ("tests", "bench", "scripts"):
            continue
        named = set(re.findall(r"`([\w./]+\.py)`", text))
        present = {
            p.name
            for p in (ROOT / folder).glob("*.py")
            if p.name not in ("__init__.py", "__main__.py")
        }
        assert not named - present, (
            f"{folder}/: README names missing files {sorted(named - present)}"
        )
        assert not present - named, f"{folder}/: README does not describe {sorted(present - named)}"


@pytest.mark.parametrize("args", [["--help"], ["config"], ["collections"], ["jobs", "--help"]])
def test_light_commands_do_not_import_qdrant_client(args, tmp_path):
    # qdrant-client's models take about as long to import as the rest of the command line:
    # only commands that filter or talk to a server load it.
    env = {**os.environ, "PIXSEEK_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    probe = (
        "import sys\n"
        "from pixseek.cli import main\n"
        "try:\n"
        f"    main({args!r}, standalone_mode=False)\n"
        "except BaseException:\n"
        "    pass\n"
        "print('qdrant_client' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert run.stdout.strip().splitlines()[-1] == "False", run.stderr
