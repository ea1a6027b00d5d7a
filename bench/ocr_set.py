"""The OCR benchmark set: real COCO photos with text rendered onto them, and its ground truth.

    .venv/bin/python -m bench.ocr_set --out /tmp/pixseek-ocr-set [--images 120] [--seed 0]

Each photo gets a two-word phrase and a single word, every word used once in the whole set (so
each word query has exactly one relevant image). Per text item: a font from Debian's font
packages (DejaVu, Liberation, FreeFont, Noto), a cap height of 12-80 px, a rotation of up to
15 degrees, high or low contrast to the local background, and in a quarter of the items a patch
hiding about a third of the last word. Each item records `visible`, the share of its stroke
pixels at least 20 grey levels from the photo under them. `--ink legible` (the default) chooses
the ink against the pixels under the strokes and moves a word whose strokes would not stand out
(>= 90% visible) to another place, so low contrast means about 45 grey levels, never invisible.
`--ink box-mean` rebuilds the first sets: one ink against the mean of the text's box, so on a
busy photo parts of a word vanished (a low-contrast grey, or yellow on yellow flowers).
Writes `images/*.jpg` and `truth.json`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageStat

REPO = Path(__file__).resolve().parents[1]
COCO = REPO.parent / "shared" / "datasets" / "coco_mini"
FONT_DIRS = ("dejavu", "liberation", "freefont", "noto")
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSerif-Bold.ttf",
    "LiberationMono-Regular.ttf",
    "FreeSans.ttf",
    "FreeSerif.ttf",
    "FreeMonoBold.ttf",
    "NotoSans-Regular.ttf",
    "NotoSerif-Bold.ttf",
)
VISIBLE_LEVELS = 20  # grey levels between a stroke pixel and the photo under it
LEGIBLE = 0.9  # `legible` sets: this share of a word's stroke pixels stands out at least that much
INK_MODES = ("legible", "box-mean")
SIZES = (12, 16, 20, 28, 40, 56, 80)
# Distinct words (3-10 letters), none a COCO category name, so keyword and dense queries differ.
WORDS = """
amber anchor arcade atlas autumn avenue badge bakery ballet bamboo banner barrel basil beacon
bishop blanket blossom border bridge bronze bubble bucket bundle butter cabin cactus canal candle
canyon carbon carpet castle cedar cellar cement chalk chapel cherry chorus cinema circus citrus
clinic cobalt coffee comet copper coral cotton cradle crater crystal cypress dagger dahlia delta
denim desert diesel dinner dolphin dragon dune eagle echo eclipse elder ember empire engine
falcon fabric ferry fiesta finch forest fossil fountain galaxy garden garlic garnet geyser ginger
glacier granite gravel griffin grotto harbor harvest hazel helmet hermit hollow honey horizon
island ivory jasmine jungle kernel kettle lagoon lantern lava lemon lilac linen lobster locket
lotus lumber magnet mango maple marble market meadow melon meteor mirror mosaic mustard nectar
nickel noodle oasis olive onyx opera orchid oyster paddle palace panther paper parade pebble
pepper piano pillar pirate planet plaza pocket poppy portal prairie prism pumpkin quarry quartz
radar raven reef ribbon river rocket rubble saddle saffron salmon sapphire satin season shadow
shelter signal silver sketch sonnet sparrow spice spiral stable statue summit sunset swallow
tavern temple thunder timber tower trumpet tulip tunnel turbine valley velvet violet voyage
walnut whisper willow window winter wizard yarrow zephyr zinc acorn alpine arrow aspen bazaar
bistro bolt brick cameo cargo cider clover compass cosmos crown cuckoo daisy dome drift ferret
fjord flint fresco gable gazebo gecko glider gospel guitar hamlet hearth heron hive indigo iris
jelly jetty juniper kayak lark ledge lynx mantle marsh mill minnow moss nebula nomad oracle orbit
otter pagoda pantry pearl pelican petal pewter pier pine plume pony quill rapids relic rogue
ruby rune sage salt scarab sequoia shrine sierra slate spruce squid stork swamp tango thistle
topaz totem trellis tundra umber vapor vault verse vessel viper vista waltz wharf wren yew zebu
ash bay cog den elm fig gem hut inn jam jay keg kit lid mud nut oak owl pod rye sap tar urn vet
wax yak zap
""".split()  # noqa: SIM905


def fonts() -> list[Path]:
    found = []
    for name in FONT_FILES:
        for folder in FONT_DIRS:
            path = Path("/usr/share/fonts/truetype") / folder / name
            if path.is_file():
                found.append(path)
    if len(found) < 3:
        raise SystemExit(
            "install Debian fonts: apt-get install fonts-liberation fonts-freefont-ttf"
        )
    return found


def _inks(
    background: Image.Image, mask: Image.Image, low_contrast: bool, rng: random.Random, ink: str
) -> list[tuple[int, ...]]:
    """Ink colours to try, best guess first. `box-mean` (the first sets): one colour against the
    mean of the text's box. `legible`: against the median of the pixels under the strokes, and
    the other colour of the pair as a second choice."""
    grey = background.convert("L")
    reference = ImageStat.Stat(grey).mean[0]
    if ink == "legible":
        under = np.asarray(grey)[np.asarray(mask) > 127]
        reference = float(np.median(under)) if under.size else reference
    if low_contrast:  # about 45 grey levels from the background
        level = reference + 45 if reference < 128 else reference - 45
        return [(int(level),) * 3 + (255,)]
    pair = [(255, 255, 255), (255, 230, 40)] if reference < 128 else [(10, 10, 10), (180, 20, 20)]
    first = rng.choice(pair)
    return [(*first, 255)] + ([(*c, 255) for c in pair if c != first] if ink == "legible" else [])


def _visible(background: Image.Image, mask: Image.Image, ink: tuple[int, ...]) -> float:
    """The share of the text's stroke pixels whose grey level differs from the photo under them
    by at least VISIBLE_LEVELS (one ink colour on a busy photo can vanish into parts of it)."""
    grey = np.asarray(background.convert("L"), dtype=np.float32)
    strokes = np.asarray(mask) > 127
    level = np.dot(np.asarray(ink[:3], dtype=np.float32), [0.299, 0.587, 0.114])
    if not strokes.any():
        return 0.0
    return round(float(np.mean(np.abs(grey[strokes] - level) >= VISIBLE_LEVELS)), 3)


def _render(text: str, font_path: Path, size: int) -> tuple[Image.Image, ImageFont.FreeTypeFont]:
    # `size` is the cap height in pixels: scale the font's em size to it.
    probe = ImageFont.truetype(str(font_path), 100)
    cap = probe.getbbox("H")[3] - probe.getbbox("H")[1]
    font = ImageFont.truetype(str(font_path), max(6, round(size * 100 / cap)))
    left, top, right, bottom = font.getbbox(text)
    pad = max(4, size // 3)
    layer = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(layer).text((pad - left, pad - top), text, font=font, fill=255)
    return layer, font


def place_text(
    photo: Image.Image,
    text: str,
    rng: random.Random,
    taken: list[tuple],
    font_list: list[Path],
    ink_mode: str = "legible",
) -> dict | None:
    font_path = rng.choice(font_list)
    size = rng.choice(SIZES)
    angle = rng.uniform(-15, 15)
    low_contrast = rng.random() < 0.3
    occluded = rng.random() < 0.25
    mask, font = _render(text, font_path, size)
    if occluded:  # hide about a third of the last word with a photo-coloured patch later
        width = font.getlength(text.split()[-1])
        x1 = mask.width - max(4, size // 3) - int(width * 0.35)
        ImageDraw.Draw(mask).rectangle([x1, 0, x1 + int(width * 0.35 * 0.9), mask.height], fill=0)
    mask = mask.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    if mask.width >= photo.width - 4 or mask.height >= photo.height - 4:
        return None
    for _ in range(50):
        x = rng.randint(2, photo.width - mask.width - 2)
        y = rng.randint(2, photo.height - mask.height - 2)
        box = (x, y, x + mask.width, y + mask.height)
        if any(
            not (box[2] < t[0] or box[0] > t[2] or box[3] < t[1] or box[1] > t[3]) for t in taken
        ):
            continue
        background = photo.crop(box)
        tried = [
            (_visible(background, mask, c), c)
            for c in _inks(background, mask, low_contrast, rng, ink_mode)
        ]
        visible, ink = next(((v, c) for v, c in tried if v >= LEGIBLE), tried[0])
        if ink_mode != "legible" or visible >= LEGIBLE:
            break  # `legible`: a word that would vanish into this part of the photo goes elsewhere
    else:
        return None
    photo.paste(Image.new("RGBA", mask.size, ink), (x, y), mask)
    taken.append(box)
    return {
        "text": text,
        "words": text.lower().split(),
        "font": font_path.name,
        "size": size,
        "rotation": round(angle, 1),
        "low_contrast": low_contrast,
        "occluded": occluded,
        "visible": visible,
        "box": list(box),
    }


def build(out: Path, n_images: int, seed: int, ink: str = "legible") -> dict:
    rng = random.Random(seed)
    font_list = fonts()
    photos = sorted((COCO / "val2017").glob("*.jpg")) + sorted((COCO / "train2017").glob("*.jpg"))
    rng.shuffle(photos)
    words = list(WORDS)
    rng.shuffle(words)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for photo_path in photos[:n_images]:
        if len(words) < 3:
            break
        photo = Image.open(photo_path).convert("RGB")
        taken: list[tuple] = []
        items = []
        for text in (f"{words.pop()} {words.pop()}", words.pop()):
            item = None
            for _ in range(5):  # a smaller size if it does not fit
                item = place_text(photo, text, rng, taken, font_list, ink)
                if item is not None:
                    break
            if item is not None:
                items.append(item)
        name = f"ocr_{photo_path.stem}.jpg"
        photo.save(out / "images" / name, quality=92)
        records.append(
            {"filename": name, "photo": str(photo_path.relative_to(COCO)), "items": items}
        )
    truth = {"seed": seed, "ink": ink, "fonts": [f.name for f in font_list], "images": records}
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pixseek-ocr-set"))
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ink", choices=INK_MODES, default="legible")
    args = parser.parse_args()
    truth = build(args.out, args.images, args.seed, args.ink)
    items = sum(len(r["items"]) for r in truth["images"])
    print(f"{len(truth['images'])} images, {items} text items in {args.out}")


if __name__ == "__main__":
    main()
