"""What a generative search job asks for: a JSON-safe, validated `JobSpec`.

The same spec is built by the CLI, sent through the broker as plain JSON, and checked again on the
worker (a client in another language may send anything). Every problem is a one-line UserError, and
on the worker such an error fails the job at once, without retries.

Generation settings left unset (None) take the worker's defaults (PIXSEEK_T2I_STEPS, _SIZE,
_GUIDANCE): the worker knows which model it runs, and the values it used are in the result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pixseek.search.fusion import DEFAULT_FUSION, FUSIONS

from pixseek.config import Settings
from pixseek.errors import UserError
from pixseek.models.generation import GenerationParams
from pixseek.store.base import check_collection_name

MAX_PROMPT_CHARS = 1000
MAX_IMAGES = 16
MAX_STEPS = 200
MIN_SIZE, MAX_SIZE = 32, 2048
MAX_LIMIT = 1000
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class JobSpec:
    prompt: str
    collection: str
    n_images: int = 4
    fusion: str = DEFAULT_FUSION
    alpha: float = 0.5  # the text's share in the `weighted` fusion
    seed: int = 0  # image i uses seed + i
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str = ""
    limit: int = 10
    threshold: float | None = None
    where: tuple[str, ...] = ()  # filter expressions (search/filters.py), ANDed
    ensemble: bool = True  # prompt-template ensembling of the text query (not of generation)
    diversity: float | None = None  # Qdrant's MMR over the fused candidates (search/steering.py)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["where"] = list(self.where)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        if not isinstance(data, dict):
            raise UserError("a job spec must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown job field(s): {', '.join(unknown)}")
        for required in ("prompt", "collection"):
            if required not in data:
                raise UserError(f"the job has no {required!r}")
        values = dict(data)
        where = values.get("where") or ()
        if isinstance(where, str):
            where = (where,)
        if not isinstance(where, list | tuple) or not all(isinstance(w, str) for w in where):
            raise UserError("'where' must be a list of filter expressions")
        values["where"] = tuple(where)
        return cls(**values).validated()

    def validated(self) -> JobSpec:
        """Check every field (types included: specs may come from anywhere); returns self."""
        _text("prompt", self.prompt)
        prompt = self.prompt.strip()
        if not prompt:
            raise UserError("the prompt is empty; describe the images to generate")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise UserError(
                f"the prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}"
            )
        _text("negative_prompt", self.negative_prompt)
        if len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise UserError(f"the negative prompt is longer than {MAX_PROMPT_CHARS} characters")
        _text("collection", self.collection)
        check_collection_name(self.collection)
        if self.fusion not in FUSIONS:
            raise UserError(f"unknown fusion {self.fusion!r}; use one of {', '.join(FUSIONS)}")
        low = 0 if self.fusion == "text" else 1
        _integer("n_images", self.n_images, low, MAX_IMAGES)
        _number("alpha", self.alpha, 0.0, 1.0)
        _integer("seed", self.seed, 0, MAX_SEED - MAX_IMAGES)
        _integer("limit", self.limit, 1, MAX_LIMIT)
        if self.steps is not None:
            _integer("steps", self.steps, 1, MAX_STEPS)
        if self.guidance is not None:
            _number("guidance", self.guidance, 0.0, 50.0)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None:
                _integer(name, value, MIN_SIZE, MAX_SIZE)
                if value % 8:
                    raise UserError(f"{name} must be a multiple of 8 (got {value})")
        if self.threshold is not None:
            _number("threshold", self.threshold, -1.0, 1.0)
        if self.diversity is not None:
            _number("diversity", self.diversity, 0.0, 1.0)
        if not isinstance(self.ensemble, bool):
            raise UserError("ensemble must be true or false")
        return replace(self, prompt=prompt)

    def generation(self, settings: Settings) -> GenerationParams:
        """The resolved generation parameters: this spec's, else the settings' defaults."""
        size = settings.t2i_size
        return GenerationParams(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            steps=self.steps if self.steps is not None else settings.t2i_steps,
            guidance=self.guidance if self.guidance is not None else default_guidance(settings),
            width=self.width if self.width is not None else size,
            height=self.height if self.height is not None else size,
        )

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n_images)]


def default_guidance(settings: Settings) -> float:
    try:
        value = float(settings.t2i_guidance)
    except ValueError:
        raise UserError(
            f"PIXSEEK_T2I_GUIDANCE must be a number (got {settings.t2i_guidance!r})"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise UserError("PIXSEEK_T2I_GUIDANCE must be 0 or more")
    return value


def parse_size(text: str) -> tuple[int, int]:
    """`512` or `768x512` (width x height)."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"image size {text!r} is not N or WIDTHxHEIGHT") from None
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise UserError(f"image size {text!r} is not N or WIDTHxHEIGHT")


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string")


def _integer(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be a whole number")
    if not low <= value <= high:
        raise UserError(f"{name} must be between {low} and {high} (got {value})")


def _number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{name} must be a number")
    if not low <= value <= high:
        raise UserError(f"{name} must be between {low:g} and {high:g} (got {value:g})")
