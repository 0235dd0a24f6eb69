"""Hub base models, fetched into the Hugging Face cache by the driver before any work starts.

A `base_model` is a preset (`preset:NAME`), a local folder, or a hub name. For a hub name the
driver makes sure the cache holds it (downloading once, with huggingface_hub's progress bars),
so the teacher tasks read the cache instead of each reaching for the hub, and a hub that cannot
be reached is one line naming the key, the reason and the fix instead of a worker's traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from kdtune.errors import UsageError

# What from_pretrained needs for config, tokenizer and weights; other formats (TF, Flax, ONNX) skipped.
WANTED_SUFFIXES = (".json", ".txt", ".model", ".safetensors")
FIX = ("fix: fill the cache where the hub is reachable (`hf download {name}`) and run with HF_HUB_OFFLINE=1, "
       "or set base_model to a local model folder")


def is_hub_name(base_model: str) -> bool:
    """Neither a preset nor something that looks like a path."""
    from kdtune.models.preset import PREFIX

    return not (base_model.startswith((PREFIX, "/", "./", "../", "~")) or Path(base_model).exists())


def fetch_base_model(name: str, where: str, log: Callable[[str], None] = print, cache_dir=None) -> Path:
    """The cached snapshot folder of hub model `name`, downloaded first if the cache lacks it."""
    from huggingface_hub import constants

    cached = complete_snapshot(name, cache_dir)
    if cached is not None:
        return cached
    if constants.HF_HUB_OFFLINE:
        raise UsageError(f"{where}: base_model: {name}: not in the Hugging Face cache "
                         f"({cache_dir or constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 forbids downloading it; "
                         + FIX.format(name=name))
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(name, timeout=15, files_metadata=True)
        files = wanted_files({s.rfilename: s.size or 0 for s in info.siblings or ()})
        size = sum(files.values())
        log(f"  base model {name}: downloading {len(files)} files ({size / 1e6:,.0f} MB) into the Hugging Face "
            f"cache, once; workers read it from there")
        return Path(snapshot_download(name, revision=info.sha, allow_patterns=sorted(files), cache_dir=cache_dir))
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one line with the fix
        raise UsageError(f"{where}: base_model: {name}: {hub_reason(exc, name)}") from None


def complete_snapshot(name: str, cache_dir=None) -> Path | None:
    """The cached snapshot folder if it holds a config and weights (no network)."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(name, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # noqa: BLE001 - not cached (or not a valid repo id): not complete
        return None
    weights = any(p.suffix in (".safetensors", ".bin") for p in path.iterdir())
    return path if (path / "config.json").is_file() and weights else None


def wanted_files(sizes: dict[str, int]) -> dict[str, int]:
    """Top-level config, tokenizer and weight files; PyTorch .bin weights only without safetensors."""
    top = {f: s for f, s in sizes.items() if "/" not in f}
    keep = {f: s for f, s in top.items() if f.endswith(WANTED_SUFFIXES)}
    if not any(f.endswith(".safetensors") for f in keep):
        keep.update({f: s for f, s in top.items() if f.startswith("pytorch_model") and f.endswith(".bin")})
    return keep


def hub_reason(exc: Exception, name: str) -> str:
    """Why the hub did not give the model, and the fix, in a few words."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HFValidationError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return f"a gated model on {constants.ENDPOINT}; fix: accept its terms on the hub and log in (`hf auth login`)"
    if isinstance(exc, RepositoryNotFoundError):
        return (f"no such model on {constants.ENDPOINT}; fix: correct the name (a private model needs "
                "`hf auth login`), or set base_model to a local model folder")
    if isinstance(exc, HFValidationError):
        return "neither a local folder nor a valid hub model name (owner/name); fix: correct it"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"the hub at {constants.ENDPOINT} answered HTTP {exc.response.status_code}; " + FIX.format(name=name)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if detail.startswith("[Errno"):  # "[Errno 111] Connection refused" -> "Connection refused"
        detail = detail.split("]", 1)[1].strip()
    return (f"the Hugging Face hub at {constants.ENDPOINT} cannot be reached ({detail}) and the model is not in the "
            f"cache; " + FIX.format(name=name))
