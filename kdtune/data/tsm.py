"""Tweet Sentiment Multilingual (UMSAB / XLM-T, Barbieri et al. 2022): 8 languages, 3 labels.

Labels: 0 negative, 1 neutral, 2 positive (the XLM-T repository's own id2label). Text is stripped
of surrounding whitespace, as XLM-T's loader does (every English tweet ends with a space).
Row ids are `<language>:<line number in the split file>`.

Local layouts accepted:
- `<dir>/<language>/{train,validation,test}.jsonl` with {"text", "label"} (../shared/data/tsm);
- the XLM-T repository: `<dir>/data/sentiment/<language>/{train,val,test}_{text,labels}.txt`
  (or `<dir>` pointing at `data/sentiment` itself); its `all/` concatenation is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import datasets

from pathlib import Path

from kdtune.data.lines import read_jsonl, read_lines
from kdtune.data.schema import SPLITS, empty_columns, to_dataset_dict
from kdtune.errors import UsageError

NAME = "tsm"
HUB_REPO = "cardiffnlp/tweet_sentiment_multilingual"
LANGUAGES = ("arabic", "english", "french", "german", "hindi", "italian", "portuguese", "spanish")
UNSEEN = ("arabic", "french", "hindi", "portuguese")  # paper Table 1
ENGLISH = ("english",)
LABELS = ("negative", "neutral", "positive")
XLMT_SPLIT = {"train": "train", "validation": "val", "test": "test"}
XLMT_SUBFOLDERS = ("data/sentiment", "sentiment", "")


def find_layout(folder: Path) -> tuple[str, Path, list[str]] | None:
    """("jsonl" | "xlmt", root, languages) for the first layout found in `folder`, else None."""
    if folder.is_dir():
        langs = sorted(p.name for p in folder.iterdir() if (p / "train.jsonl").is_file())
        if langs:
            return "jsonl", folder, langs
    for sub in XLMT_SUBFOLDERS:
        root = folder / sub if sub else folder
        if root.is_dir():
            langs = sorted(
                p.name for p in root.iterdir() if p.name != "all" and (p / "train_text.txt").is_file()
            )
            if langs:
                return "xlmt", root, langs
    return None


def source_files(layout: str, root: Path, languages: list[str]) -> list[Path]:
    """Every file the layout needs; a missing one is a UsageError naming it."""
    files = []
    for lang in languages:
        for split in SPLITS:
            if layout == "jsonl":
                names = [f"{split}.jsonl"]
            else:
                names = [f"{XLMT_SPLIT[split]}_text.txt", f"{XLMT_SPLIT[split]}_labels.txt"]
            for name in names:
                path = root / lang / name
                if not path.is_file():
                    raise UsageError(f"missing data file {path} (tsm language {lang}, split {split})")
                files.append(path)
    return files


def _label(value, path: Path, number: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(LABELS):
        raise UsageError(f"{path} line {number}: label {value!r} is not 0, 1 or 2")
    return value


def read_local(layout: str, root: Path, languages: list[str]) -> "datasets.DatasetDict":
    columns = empty_columns()
    for lang in languages:
        for split in SPLITS:
            col = columns[split]
            if layout == "jsonl":
                path = root / lang / f"{split}.jsonl"
                for number, record in read_jsonl(path, ("text", "label")):
                    if not isinstance(record["text"], str):
                        raise UsageError(f"{path} line {number}: text is not a string")
                    col["id"].append(f"{lang}:{number}")
                    col["text"].append(record["text"].strip())
                    col["language"].append(lang)
                    col["label"].append(_label(record["label"], path, number))
            else:
                text_path = root / lang / f"{XLMT_SPLIT[split]}_text.txt"
                label_path = root / lang / f"{XLMT_SPLIT[split]}_labels.txt"
                texts = list(read_lines(text_path))
                labels = list(read_lines(label_path))
                # A trailing empty line in one file only is a terminator, not a row.
                if labels and not labels[-1][1].strip():
                    labels.pop()
                if len(texts) > len(labels) and not texts[-1][1]:
                    texts.pop()
                if len(texts) != len(labels):
                    raise UsageError(
                        f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}"
                    )
                for (number, text), (_, raw) in zip(texts, labels):
                    col["id"].append(f"{lang}:{number}")
                    col["text"].append(text.strip())
                    col["language"].append(lang)
                    col["label"].append(_label(raw, label_path, number))
    return to_dataset_dict(columns, LABELS)


def from_hub() -> "datasets.DatasetDict":
    """`cardiffnlp/tweet_sentiment_multilingual`, one config per language (labels already 0/1/2)."""
    import datasets

    from kdtune.data.sources import check_hub, hub_failure

    check_hub(NAME, HUB_REPO)
    columns = empty_columns()
    for lang in LANGUAGES:
        hub = None
        last: Exception | None = None
        for revision in (None, "refs/convert/parquet"):  # the repo was script-based
            try:
                hub = datasets.load_dataset(HUB_REPO, lang, revision=revision)
                break
            except Exception as exc:  # try the next revision, then report one line
                last = exc
        if hub is None:
            raise hub_failure(NAME, HUB_REPO, last) from None
        for split in SPLITS:
            col = columns[split]
            for number, row in enumerate(hub[split], start=1):
                col["id"].append(f"{lang}:{number}")
                col["text"].append(row["text"].strip())
                col["language"].append(lang)
                col["label"].append(int(row["label"]))
    return to_dataset_dict(columns, LABELS)
