"""MASSIVE 1.1 (FitzGerald et al.): 52 locales, 60 intents, splits train/dev/test.

Label ids: the 60 intent strings sorted alphabetically (`INTENTS[0] == "alarm_query"`, ...,
`INTENTS[59] == "weather_query"`). This is NOT the Hugging Face `AmazonScience/massive` ClassLabel
order; hub data is remapped by name. MASSIVE's "dev" split is returned as "validation".

Local layouts accepted (searched in `<dir>`, `<dir>/1.1/data`, `<dir>/data`, `<dir>/*/data`):
- `<locale>.jsonl.gz` with at least id, locale, partition, utt, intent (../shared/data/massive);
- `<locale>.jsonl`, the official release files with all fields (scenario, annot_utt, ...);
- one `massive.jsonl.gz` (or `.jsonl`) holding several locales, each record with its `locale`
  (kdtune's packaged demo sample, `kdtune/data/sample/massive/`); used when no per-locale file is.
Row ids are `<locale>:<MASSIVE id>`; the MASSIVE id is shared by the parallel utterances.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import datasets

import re
from pathlib import Path

from kdtune.data.lines import read_jsonl
from kdtune.data.schema import SPLITS, empty_columns, to_dataset_dict
from kdtune.errors import UsageError

NAME = "massive"
HUB_REPO = "AmazonScience/massive"

LOCALES = (
    "af-ZA", "am-ET", "ar-SA", "az-AZ", "bn-BD", "ca-ES", "cy-GB", "da-DK", "de-DE", "el-GR",
    "en-US", "es-ES", "fa-IR", "fi-FI", "fr-FR", "he-IL", "hi-IN", "hu-HU", "hy-AM", "id-ID",
    "is-IS", "it-IT", "ja-JP", "jv-ID", "ka-GE", "km-KH", "kn-IN", "ko-KR", "lv-LV", "ml-IN",
    "mn-MN", "ms-MY", "my-MM", "nb-NO", "nl-NL", "pl-PL", "pt-PT", "ro-RO", "ru-RU", "sl-SL",
    "sq-AL", "sv-SE", "sw-KE", "ta-IN", "te-IN", "th-TH", "tl-PH", "tr-TR", "ur-PK", "vi-VN",
    "zh-CN", "zh-TW",
)  # fmt: skip

# Paper Table 1, "unseen lang partition" for massive, in the paper's order (27 locales; ca-ES is
# the locale MASSIVE 1.1 added).
UNSEEN = (
    "am-ET", "cy-GB", "af-ZA", "km-KH", "sw-KE", "mn-MN", "tl-PH", "kn-IN", "te-IN", "sq-AL",
    "ur-PK", "az-AZ", "ml-IN", "ms-MY", "ca-ES", "sl-SL", "sv-SE", "ta-IN", "nl-NL", "it-IT",
    "he-IL", "pl-PL", "da-DK", "nb-NO", "ro-RO", "th-TH", "fa-IR",
)  # fmt: skip
ENGLISH = ("en-US",)

INTENTS = (
    "alarm_query", "alarm_remove", "alarm_set", "audio_volume_down", "audio_volume_mute",
    "audio_volume_other", "audio_volume_up", "calendar_query", "calendar_remove", "calendar_set",
    "cooking_query", "cooking_recipe", "datetime_convert", "datetime_query", "email_addcontact",
    "email_query", "email_querycontact", "email_sendemail", "general_greet", "general_joke",
    "general_quirky", "iot_cleaning", "iot_coffee", "iot_hue_lightchange", "iot_hue_lightdim",
    "iot_hue_lightoff", "iot_hue_lighton", "iot_hue_lightup", "iot_wemo_off", "iot_wemo_on",
    "lists_createoradd", "lists_query", "lists_remove", "music_dislikeness", "music_likeness",
    "music_query", "music_settings", "news_query", "play_audiobook", "play_game", "play_music",
    "play_podcasts", "play_radio", "qa_currency", "qa_definition", "qa_factoid", "qa_maths",
    "qa_stock", "recommendation_events", "recommendation_locations", "recommendation_movies",
    "social_post", "social_query", "takeaway_order", "takeaway_query", "transport_query",
    "transport_taxi", "transport_ticket", "transport_traffic", "weather_query",
)  # fmt: skip
assert INTENTS == tuple(sorted(INTENTS)) and len(INTENTS) == 60

SPLIT_OF_PARTITION = {"train": "train", "dev": "validation", "test": "test"}
REQUIRED_FIELDS = ("id", "partition", "utt", "intent")
SUBFOLDERS = ("", "1.1/data", "data")
_FILE = re.compile(r"^([a-z]{2,3}-[A-Z]{2})\.jsonl(\.gz)?$")
_COMBINED = re.compile(r"^massive\.jsonl(\.gz)?$")
ALL_LOCALES = "*"  # find_files key of a combined file: the locale is read from each record


def find_files(folder: Path) -> dict[str, Path]:
    """Per-locale files of the first candidate subfolder that has any; {} if none.

    A plain `.jsonl` wins over a `.jsonl.gz` of the same locale (the official release is plain).
    A folder with no per-locale file but a combined `massive.jsonl[.gz]` gives {ALL_LOCALES: it}.
    """
    # Also any release's `<version>/data` (the 1.0 tarball unpacks to 1.0/data/), newest first.
    others = sorted((p.parent.name for p in folder.glob("*/data") if p.is_dir()), reverse=True) if folder.is_dir() else []
    for sub in list(SUBFOLDERS) + [f"{name}/data" for name in others]:
        base = folder / sub if sub else folder
        if not base.is_dir():
            continue
        found: dict[str, Path] = {}
        combined: dict[str, Path] = {}
        for path in sorted(base.iterdir()):
            match = _FILE.match(path.name)
            if match and path.is_file():
                locale, gz = match.group(1), match.group(2)
                if locale not in found or not gz:
                    found[locale] = path
            elif _COMBINED.match(path.name) and path.is_file() and (not combined or path.suffix == ".jsonl"):
                combined = {ALL_LOCALES: path}
        if found or combined:
            return dict(sorted(found.items())) or combined
    return {}


def read_local(files: dict[str, Path]) -> "datasets.DatasetDict":
    """Parse per-locale files into the common schema (see kdtune.data.schema)."""
    index = {name: i for i, name in enumerate(INTENTS)}
    columns = empty_columns()
    for file_locale, path in files.items():
        required = REQUIRED_FIELDS + (("locale",) if file_locale == ALL_LOCALES else ())
        for number, record in read_jsonl(path, required):
            locale = file_locale
            if file_locale == ALL_LOCALES:
                locale = record["locale"]
                if locale not in LOCALES:
                    raise UsageError(f"{path} line {number}: locale {locale!r} is not a MASSIVE locale")
            split = SPLIT_OF_PARTITION.get(record["partition"])
            if split is None:
                raise UsageError(
                    f"{path} line {number}: partition {record['partition']!r} is not one of train, dev, test"
                )
            label = index.get(record["intent"])
            if label is None:
                raise UsageError(f"{path} line {number}: unknown intent {record['intent']!r}")
            if not isinstance(record["utt"], str):
                raise UsageError(f"{path} line {number}: utt is not a string")
            col = columns[split]
            col["id"].append(f"{locale}:{record['id']}")
            col["text"].append(record["utt"].strip())
            col["language"].append(locale)
            col["label"].append(label)
    return to_dataset_dict(columns, INTENTS)


def from_hub() -> "datasets.DatasetDict":
    """`AmazonScience/massive` via its parquet conversion (the hub copy is script-based).

    Intent ids are remapped by name from the hub's ClassLabel order to `INTENTS`.
    """
    import datasets

    from kdtune.data.sources import check_hub, hub_failure

    check_hub(NAME, HUB_REPO)
    try:
        hub = datasets.load_dataset(HUB_REPO, "all", revision="refs/convert/parquet")
    except Exception as exc:  # any failure of the hub path becomes one line
        raise hub_failure(NAME, HUB_REPO, exc) from None
    index = {name: i for i, name in enumerate(INTENTS)}
    columns = empty_columns()
    for hub_split, split in (("train", "train"), ("validation", "validation"), ("test", "test")):
        part = hub[hub_split]
        feature = part.features["intent"]
        names = feature.names if hasattr(feature, "names") else None
        col = columns[split]
        for row in part:
            intent = names[row["intent"]] if names else row["intent"]
            col["id"].append(f"{row['locale']}:{row['id']}")
            col["text"].append(row["utt"].strip())
            col["language"].append(row["locale"])
            col["label"].append(index[intent])
    assert set(SPLITS) == set(columns)
    return to_dataset_dict(columns, INTENTS)
