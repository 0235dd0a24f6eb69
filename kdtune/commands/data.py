"""`kdtune data`: rows per language and label of a dataset selection (partition, fraction, seed)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="massive, tsm or synthetic")
    parser.add_argument("--data-dir", default=None, help="local folder, archive or URL (else KDTUNE_DATA_DIR, else the hub)")
    parser.add_argument("--partition", default="all", help="all, seen, unseen, english, or a comma-separated language list")
    parser.add_argument("--fraction", default="1.0", help="stratified share of the split, 0 < f <= 1 (default 1.0)")
    parser.add_argument("--seed", default="0", help="seed of the stratified sample (default 0)")
    parser.add_argument("--split", default="train", help="train, validation or test (default train)")
    parser.add_argument("--json", action="store_true", help="print JSON with every (language, label) count")


def counts(ds, label_names) -> dict[str, dict[str, int]]:
    """{language: {label name: rows}} over the rows of `ds` (labels with 0 rows omitted)."""
    from collections import Counter

    from kdtune.data.schema import arrow_columns

    table = arrow_columns(ds, ["language", "label"])
    pairs = Counter(zip(table.column("language").to_pylist(), table.column("label").to_pylist()))
    result: dict[str, dict[str, int]] = {}
    for (lang, label), n in sorted(pairs.items()):
        result.setdefault(lang, {})[label_names[label]] = n
    return result


def run(args: argparse.Namespace) -> int:
    import json

    from kdtune import data
    from kdtune.errors import UsageError

    data.check_dataset(args.dataset)
    if args.split not in data.SPLITS:
        raise UsageError(f"--split {args.split!r} is not one of {', '.join(data.SPLITS)}")
    fraction = data.fractions.check_fraction(args.fraction)
    try:
        seed = int(args.seed)
    except ValueError:
        raise UsageError(f"--seed {args.seed!r} is not an integer") from None
    langs = data.languages(args.dataset, args.partition)
    split = data.load(args.dataset, args.data_dir)[args.split]
    selected = data.stratified_fraction(data.select_languages(split, langs), fraction, seed)
    names = split.features["label"].names
    table = counts(selected, names)
    if args.json:
        print(json.dumps({
            "dataset": args.dataset, "split": args.split, "partition": args.partition,
            "languages": langs, "fraction": fraction, "seed": seed, "rows": len(selected),
            "rows_per_language": {lang: sum(c.values()) for lang, c in table.items()},
            "label_names": list(names), "counts": table,
        }, indent=2, ensure_ascii=False))  # fmt: skip
        return 0
    print(
        f"{args.dataset} {args.split}, partition {args.partition} ({len(langs)} languages), "
        f"fraction {fraction:g}, seed {seed}: {len(selected)} rows, {len(names)} labels"
    )
    width = max([len("language")] + [len(lang) for lang in table])
    print(f"{'language':<{width}}  {'rows':>7}  {'labels':>6}  {'min/label':>9}  {'max/label':>9}")
    for lang, per_label in table.items():
        values = list(per_label.values())
        print(f"{lang:<{width}}  {sum(values):>7}  {len(values):>6}  {min(values):>9}  {max(values):>9}")
    print(f"{'total':<{width}}  {len(selected):>7}")
    return 0
