"""Optional query rewriting before generation, by an OpenAI-compatible chat model.

VisRet (Visualize-then-Retrieve) first has an LLM turn the search query into a prompt for the
image generator. `PIXSEEK_T2I_REWRITE_MODEL=gpt-4o-mini` (OpenAI, key from the same variable as
the images API) or `MODEL@BASE_URL` (any server with POST /chat/completions) turns it on; empty,
the default, sends the query as typed. Only the generated images see the rewrite: the text half
of a fused search still embeds the user's words.

Rewrites are kept on disk (`<cache_dir>/rewrites/`, keyed by model, server, instruction and
query), so repeating a query reuses the same prompt and therefore its cached images; a chat
model need not answer the same way twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pixseek.errors import Misconfigured
from pixseek.models import openai_http

INSTRUCTION = (
    "You write prompts for a text-to-image model that illustrates image-search queries. "
    "Rewrite the query as one prompt describing a realistic photograph that shows exactly what "
    "the query asks for: keep every object, attribute, count and relation it names, add only "
    "visual detail that does not change its meaning, and translate it to English. "
    "Answer with the prompt only, without quotes."
)
MAX_CHARS = 2000


def _endpoint(settings: Any) -> tuple[str, openai_http.Endpoint]:
    default = (os.environ.get("OPENAI_BASE_URL") or openai_http.OPENAI_BASE_URL).rstrip("/")
    model, base = openai_http.split_model(settings.t2i_rewrite_model.strip(), default)
    key_env = settings.t2i_api_key_env or "OPENAI_API_KEY"
    endpoint = openai_http.Endpoint(
        base_url=base,
        key=os.environ.get(key_env) or None,
        key_env=key_env,
        timeout_s=float(settings.t2i_api_timeout_s),
        attempts=max(1, int(settings.t2i_api_retries)),
    )
    return model, endpoint


def _cache_path(settings: Any, model: str, base: str, query: str) -> Path:
    key = json.dumps([model, base, INSTRUCTION, query], ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return Path(settings.cache_dir) / "rewrites" / digest[:2] / f"{digest}.json"


def rewrite_query(query: str, settings: Any) -> str:
    """The generation prompt for `query`: the query itself when rewriting is off."""
    if not settings.t2i_rewrite_model.strip():
        return query
    model, endpoint = _endpoint(settings)
    path = _cache_path(settings, model, endpoint.base_url, query)
    try:
        return str(json.loads(path.read_text())["prompt"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": query},
        ],
        "temperature": 0,
    }
    answer = openai_http.post_json("chat/completions", body, endpoint, "the query-rewriting API")
    try:
        text = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    prompt = " ".join(str(text or "").split()).strip().strip("\"'")
    if not prompt:
        raise Misconfigured(
            f"the query-rewriting API at {endpoint.host} answered no choices[0].message.content; "
            "check PIXSEEK_T2I_REWRITE_MODEL or unset it"
        )
    prompt = prompt[:MAX_CHARS]
    _store(path, {"query": query, "prompt": prompt, "model": model})
    return prompt


def _store(path: Path, record: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs another request next time
        pass
