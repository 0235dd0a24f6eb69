"""A fully synthetic, parallel, multilingual intent dataset: no files, deterministic, fast.

Eight intents (`INTENTS`, sorted; several share words, e.g. the three alarm intents, "music" in
play_music and audio_volume_up) are written as English templates with slots (time, day, person,
city, ...); a few templates are shared by two or three intents (`AMBIGUOUS`), so roughly a tenth
of the rows cannot be classified with certainty and accuracy tops out near 90%. Each English utterance is rendered in six "languages" in different scripts:

- english (Latin script, the source);
- latin, cyrillic, greek, arabic, cjk: pseudo-languages whose words are a fixed, deterministic
  cipher of the English words into that script (names stay verbatim in Latin script, are
  transliterated elsewhere). cyrillic and cjk drop articles; cjk puts the first word last
  (verb-final) and writes no spaces between words.

So the data is parallel like MASSIVE (row `<language>:<n>` translates `english:<n>`), but shares no
surface forms across scripts: a model must learn each language or transfer across them.
Per language: 40 train, 8 validation and 12 test utterances per intent (320/64/96 rows).
Partitions: english = [english]; unseen = [arabic, cjk]; seen = the other four.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import datasets

import random

from kdtune.data.schema import SPLITS, empty_columns, to_dataset_dict

NAME = "synthetic"
LANGUAGES = ("arabic", "cjk", "cyrillic", "english", "greek", "latin")
UNSEEN = ("arabic", "cjk")
ENGLISH = ("english",)
ROWS_PER_INTENT = {"train": 40, "validation": 8, "test": 12}
SEED = "kdtune-synthetic-v1"

TEMPLATES: dict[str, tuple[str, ...]] = {
    "alarm_query": (
        "what alarms do i have {day}",
        "is there an alarm at {time}",
        "show me my alarms for {day}",
        "did i set an alarm {day}",
    ),
    "alarm_remove": (
        "remove the alarm for {time}",
        "cancel my alarm {day}",
        "please delete the {time} alarm",
        "i do not need my alarm at {time} anymore",
    ),
    "alarm_set": (
        "set an alarm for {time}",
        "wake me up at {time} {day}",
        "please set my alarm to {time}",
        "i need an alarm {day} at {time}",
    ),
    "audio_volume_up": (
        "turn the volume up",
        "make the music louder please",
        "increase the volume to {number}",
        "i can not hear it turn it up {day}",
    ),
    "calendar_set": (
        "add a meeting with {person} {day}",
        "remind me to call {person} at {time}",
        "put lunch with {person} on my calendar for {day}",
        "schedule a call with {person} at {time} {day}",
    ),
    "play_music": (
        "play some {genre} music",
        "i want to hear {artist}",
        "put on {artist} please",
        "play the new song by {artist} {day}",
    ),
    "takeaway_order": (
        "order a {food} from {restaurant}",
        "i want {food} delivered at {time}",
        "get me a {food} please",
        "can you order {food} for {day}",
    ),
    "weather_query": (
        "what is the weather in {city} {day}",
        "will it rain {day}",
        "is it cold in {city} at {time}",
        "do i need an umbrella {day}",
    ),
}
# Templates shared by several intents: these utterances are genuinely ambiguous (as some MASSIVE
# ones are), so no model can reach 100% and the task is not trivially solved by keywords.
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "my alarm at {time}": ("alarm_query", "alarm_remove", "alarm_set"),
    "the music {day}": ("audio_volume_up", "play_music"),
    "lunch at {time} {day}": ("calendar_set", "takeaway_order"),
    "what about {day}": ("alarm_query", "weather_query"),
}
for _template, _intents in AMBIGUOUS.items():
    for _intent in _intents:
        TEMPLATES[_intent] += (_template,)
INTENTS = tuple(sorted(TEMPLATES))

SLOTS: dict[str, tuple[str, ...]] = {
    "time": ("five am", "seven thirty", "noon", "six pm", "nine am", "ten pm", "eight fifteen", "midnight"),
    "day": ("today", "tomorrow", "on monday", "on friday", "this weekend", "tonight"),
    "person": ("anna", "omar", "li", "maria", "john", "sara"),
    "city": ("paris", "tokyo", "cairo", "lima", "oslo", "delhi"),
    "genre": ("jazz", "rock", "classical", "pop"),
    "artist": ("adele", "queen", "shakira", "beyonce"),
    "food": ("pizza", "burger", "sushi", "salad", "curry"),
    "restaurant": ("mario", "the corner cafe", "golden dragon"),
    "number": ("five", "eight", "ten"),
}
NAMES = frozenset(SLOTS["person"] + SLOTS["city"] + SLOTS["artist"] + ("mario",))
FILLERS = ("hey", "ok", "um", "hello")
ARTICLES = frozenset(("a", "an", "the"))

# Letters for each script's pseudo-words: (consonants, vowels); cjk uses ideographs instead.
SCRIPTS = {
    "latin": ("bdfgklmnprstvz", "aeiouáéó"),
    "cyrillic": ("бвгджзклмнпрстфхцчш", "аеиоуыюя"),
    "greek": ("βγδζθκλμνξπρστφχψ", "αεηιουω"),
    "arabic": ("بتثجحخدذرزسشصضطظعغفقكلمنهي", "اوي"),
}


def _lexicon(language: str, words: list[str]) -> dict[str, str]:
    """Deterministic one-to-one map from English words to pseudo-words of `language`'s script."""
    table: dict[str, str] = {}
    used: set[str] = set()
    for word in sorted(words):
        if language == "latin" and word in NAMES:
            table[word] = word
            continue
        rng = random.Random(f"{SEED}:{language}:{word}")  # str seeds hash with sha512: stable
        while True:
            if language == "cjk":
                pseudo = "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(1 + (len(word) > 4)))
            else:
                consonants, vowels = SCRIPTS[language]
                syllables = max(1, min(4, round(len(word) / 2.5)))
                pseudo = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
            if pseudo not in used:
                break
        used.add(pseudo)
        table[word] = pseudo
    return table


def _render(words: list[str], language: str, lexicon: dict[str, str]) -> str:
    if language == "english":
        return " ".join(words)
    if language in ("cyrillic", "cjk"):
        words = [w for w in words if w not in ARTICLES] or words
    out = [lexicon[w] for w in words]
    if language == "cjk":
        return "".join(out[1:] + out[:1])
    return " ".join(out)


def english_utterances() -> dict[str, list[tuple[list[str], int]]]:
    """Per split, the English utterances (as word lists) with their label ids, in row order."""
    rng = random.Random(SEED)
    result: dict[str, list[tuple[list[str], int]]] = {}
    for split in SPLITS:
        rows = []
        for _ in range(ROWS_PER_INTENT[split]):
            for label, intent in enumerate(INTENTS):
                template = rng.choice(TEMPLATES[intent])
                text = template.format(**{slot: rng.choice(values) for slot, values in SLOTS.items()})
                if rng.random() < 0.25:
                    text = f"{rng.choice(FILLERS)} {text}"
                rows.append((text.split(), label))
        rng.shuffle(rows)
        result[split] = rows
    return result


def generate() -> "datasets.DatasetDict":
    """The synthetic DatasetDict (same schema as the real loaders; ids `<language>:<n>`)."""
    utterances = english_utterances()
    vocab = sorted({w for rows in utterances.values() for words, _ in rows for w in words})
    lexicons = {lang: _lexicon(lang, vocab) for lang in LANGUAGES if lang != "english"}
    columns = empty_columns()
    for lang in LANGUAGES:  # rows grouped by language, like the real loaders
        counter = 0  # shared numbering over splits, so ids are unique and parallel
        for split in SPLITS:
            col = columns[split]
            for words, label in utterances[split]:
                col["id"].append(f"{lang}:{counter}")
                col["text"].append(_render(words, lang, lexicons.get(lang, {})))
                col["language"].append(lang)
                col["label"].append(label)
                counter += 1
    return to_dataset_dict(columns, INTENTS)
