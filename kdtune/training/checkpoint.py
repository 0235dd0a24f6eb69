"""Resumable training state on disk, for students (kdtune.training.trial) and teachers (kdtune.training.teacher_store).

A checkpoint folder holds the live weights (`model.safetensors`, extra modules under a prefix),
the best weights so far (`best.safetensors`), the optimizer, scheduler and random states
(`optim.pt`, read back with `weights_only=True`) and `meta.json` (step, best score, evaluation
history and whatever the caller adds). It is written whole to a temporary folder and renamed into
place, so a crash mid-write leaves the previous checkpoint. A run that has finished but must stay
resumable (a teacher seed, until every seed of its teacher is done) slims its checkpoint to the
best weights and the meta: a resume then has no step left, so reads neither live weights nor
optimizer, and keeps one model-sized file instead of about four.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kdtune.models.vocab import fit_checkpoint
from kdtune.training.loop import TrainState

FINISHED = "finished"  # meta key of a slimmed checkpoint (slim_checkpoint)


def save_checkpoint(folder: Path, model: torch.nn.Module, state: TrainState, extra: dict,
                    parts: dict[str, torch.nn.Module] | None = None) -> None:
    """Write `model` (+ each of `parts` under `<name>.`), the state and `extra` meta atomically."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, part in (parts or {}).items():
        weights.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in part.state_dict().items()})
    save_file(untie(weights), tmp / "model.safetensors")
    if state.best_weights is not None:
        save_file(untie(state.best_weights), tmp / "best.safetensors")
    torch.save({"optimizer": state.optimizer, "scheduler": state.scheduler, "rng": state.rng}, tmp / "optim.pt")
    meta = {"step": state.step, "best_score": state.best_score, "best_step": state.best_step,
            "history": state.history, **extra}
    (tmp / "meta.json").write_text(json.dumps(meta))
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def slim_checkpoint(folder: Path) -> None:
    """Cut a finished run's checkpoint to `best.safetensors` and `meta.json` (marked finished):
    the live weights and the optimizer state (AdamW's two moments) go. The mark is written first,
    so a crash halfway leaves a checkpoint that still loads."""
    folder = Path(folder)
    if not (folder / "best.safetensors").is_file():  # nothing to stand in for the live weights
        return
    meta = json.loads((folder / "meta.json").read_text())
    tmp = folder / f".meta.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({**meta, FINISHED: True}))
    os.replace(tmp, folder / "meta.json")
    for name in ("optim.pt", "model.safetensors"):
        (folder / name).unlink(missing_ok=True)


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / "meta.json").is_file()


def load_checkpoint(folder: Path, model: torch.nn.Module,
                    parts: dict[str, torch.nn.Module] | None = None) -> tuple[TrainState, dict]:
    """Restore the weights into `model` (and `parts`); return the TrainState to continue from and the meta.

    A slimmed (finished) checkpoint has no live weights or optimizer: its best weights go into
    `model` (what training ends with anyway; loading them here checks that they fit). Anywhere
    else a missing file is an error."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get(FINISHED):
        assert not parts, "only teachers, which have no extra parts, slim their checkpoints"
        best = fit_checkpoint(model, load_file(folder / "best.safetensors"))
        model.load_state_dict(best)
        state = TrainState(step=meta["step"], best_score=meta["best_score"], best_step=meta["best_step"],
                           best_weights=best, history=meta["history"])
        return state, meta
    # A table written full (before the used-vocabulary trim, or with it off) is sliced to the
    # model's used rows; one written trimmed trims the model (kdtune.models.vocab).
    weights = fit_checkpoint(model, load_file(folder / "model.safetensors"))
    prefixes = tuple(f"{name}." for name in parts or {})
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith(prefixes)})
    for name, part in (parts or {}).items():
        own = {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(f"{name}.")}
        if own:
            part.load_state_dict(own)
    # On the CPU first: load_state_dict moves the optimizer's tensors to the parameters' device, so
    # a checkpoint written on a GPU still loads on a host without one.
    optim = torch.load(folder / "optim.pt", weights_only=True, map_location="cpu")
    best = folder / "best.safetensors"
    best = fit_checkpoint(model, load_file(best)) if best.exists() else None
    state = TrainState(
        step=meta["step"], best_score=meta["best_score"], best_step=meta["best_step"], best_weights=best,
        optimizer=optim["optimizer"], scheduler=optim["scheduler"], history=meta["history"],
        rng=optim.get("rng"),  # absent from checkpoints written before it was kept
    )
    return state, meta


def untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): store copies."""
    seen: set[int] = set()
    out = {}
    for k, v in weights.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
