"""Write kdtune's packaged MASSIVE demo sample (kdtune/data/sample/massive/massive.jsonl.gz).

    python -m kdtune.data.make_sample ../shared/data/massive

Parallel and stratified: the MASSIVE ids are chosen once, on en-US, per split, by kdtune's own
(language, intent)-stratified rule (`kdtune.data.stratified_fraction`, seed 0: every intent of a
split keeps round(n * fraction) rows, at least 1), and the same ids are taken in every locale of
`LOCALES` (MASSIVE is parallel: an id is one utterance in every locale). Records are copied
unchanged from the source files (id, locale, partition, utt, intent), in locale order, then the
source order. The gzip header carries no time stamp, so the same input gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

LOCALES = ("de-DE", "en-US", "es-ES", "fr-FR", "it-IT")  # Latin script; it-IT is unseen (Table 1)
FRACTIONS = {"train": 0.04, "validation": 0.05, "test": 0.07}
PARTITION = {"train": "train", "validation": "dev", "test": "test"}
OUT = Path(__file__).resolve().parents[1] / "kdtune" / "data" / "sample" / "massive" / "massive.jsonl.gz"


def main(source: str) -> None:
    from kdtune import data
    from kdtune.data.lines import read_jsonl

    folder = Path(source)
    english = data.select_languages(data.load("massive", folder), ["en-US"])
    chosen = {}
    for split, fraction in FRACTIONS.items():
        rows = data.stratified_fraction(english[split], fraction, seed=0)
        chosen[PARTITION[split]] = {row.split(":", 1)[1] for row in rows["id"]}
    lines = []
    for locale in LOCALES:
        for _, record in read_jsonl(folder / f"{locale}.jsonl.gz", ("id", "locale", "partition", "utt", "intent")):
            if record["id"] in chosen[record["partition"]]:
                lines.append(json.dumps({k: record[k] for k in ("id", "locale", "partition", "utt", "intent")},
                                        ensure_ascii=False))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(("\n".join(lines) + "\n").encode("utf-8"))
    OUT.write_bytes(buffer.getvalue())
    counts = {p: len(ids) for p, ids in chosen.items()}
    print(f"{OUT}: {len(lines)} rows ({len(LOCALES)} locales x {counts}), {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/massive")
