"""The registry of text-to-image backends, chosen by a prefix of PIXSEEK_T2I_MODEL.

`stabilityai/sd-turbo` or `/models/sd15` (no prefix) is a local diffusers pipeline
(pixseek/models/t2i.py). A backend is a module that defines these four functions:

    fingerprint(model) -> str        identity for the generated-image cache, without loading
    check(model) -> None             cheap checks before any work (raise Misconfigured)
    load(model, device) -> object    the generator: check_size, check_prompt, generate(...)
    loaded() -> list[str]            models loaded in this process (for /health and progress)

Adding a backend (a hosted images API, say) is its module plus one line in `BACKENDS`. This
module imports no backend: each is imported when a job first uses it.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType

# prefix -> module; the empty prefix (a Hub id or a directory) is the local diffusers pipeline.
BACKENDS: dict[str, str] = {
    "": "pixseek.models.t2i",
    "openai": "pixseek.models.t2i_openai",  # openai:gpt-image-1
    "openai-compatible": "pixseek.models.t2i_openai",  # openai-compatible:MODEL@BASE_URL
}


@dataclass(frozen=True)
class Resolved:
    prefix: str
    model: str  # the model name without the prefix
    module: ModuleType

    def fingerprint(self) -> str:
        return self.module.fingerprint(self.model)

    def check(self) -> None:
        self.module.check(self.model)

    def load(self, device: str):  # noqa: ANN201 - each backend returns its own generator type
        return self.module.load(self.model, device)

    def is_loaded(self) -> bool:
        return self.model in self.module.loaded()


def resolve(setting: str) -> Resolved:
    """The backend for a PIXSEEK_T2I_MODEL value: `prefix:model`, or a plain diffusers model."""
    prefix, _, rest = setting.partition(":")
    if rest and prefix in BACKENDS and prefix:
        return Resolved(prefix, rest, importlib.import_module(BACKENDS[prefix]))
    return Resolved("", setting, importlib.import_module(BACKENDS[""]))


def loaded_models() -> list[str]:
    """Models loaded in this process by any backend already imported."""
    found: list[str] = []
    for module_name in dict.fromkeys(BACKENDS.values()):  # one module may serve two prefixes
        module = sys.modules.get(module_name)
        if module is not None:
            found.extend(module.loaded())
    return found
