"""Safe persistence: the teacher store under concurrency and crashes, and trial checkpoints."""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os

import pytest
import torch

from kdtune.config import make_trial

TRIAL = {
    "dataset": "synthetic", "base_model": "preset:micro", "kd": True, "epochs": 1, "batch_size": 64,
    "lr": 1e-3, "eval_steps": 10, "log_steps": 5, "max_length": 32, "teacher_max_steps": 10,
    "teacher_batch_size": 64, "teacher_eval_steps": 10,
}


def _ensure(store: str, marker: str, cache: str) -> None:
    os.environ["KDTUNE_CACHE"] = cache
    torch.set_num_threads(1)
    from kdtune.training.teacher_store import ensure_teacher

    def on_trained(info, folder):
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")

    ensure_teacher(make_trial(TRIAL), store, on_trained=on_trained, log=lambda m: None)


def test_two_processes_asking_for_one_teacher_train_it_once(tmp_path, kdtune_cache):
    from kdtune.models.preset import resolve_base_model

    resolve_base_model("preset:micro", "synthetic")  # build the preset once, outside the race
    marker = tmp_path / "trained.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ensure, args=(str(tmp_path / "store"), str(marker), str(kdtune_cache)))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert len(marker.read_text().split()) == 1
    teachers = [p for p in (tmp_path / "store" / "teachers").iterdir() if p.is_dir()]
    assert len(teachers) == 1 and (teachers[0] / "teacher.json").is_file()


def test_a_half_written_teacher_is_detected_and_rebuilt(tmp_path, kdtune_cache):
    from kdtune.training.teacher_store import ensure_teacher, is_complete, teacher_path

    trial = make_trial(TRIAL)
    path = teacher_path(tmp_path, trial.teacher_key)
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")  # a crash left weights half-written, no marker
    leftover = path.with_name(f".{path.name}.tmp-999999")
    leftover.mkdir()
    (leftover / "junk").write_text("x")
    trained, lines = [], []
    got = ensure_teacher(trial, tmp_path, on_trained=lambda info, f: trained.append(info), log=lambda m: None,
                         progress=lines.append)
    assert got == path and is_complete(path) and len(trained) == 1
    # progress: one line per log step (log_steps 5, teacher_max_steps 10); the only evaluation is
    # at step 10, after that step's line, so no line carries a validation score yet.
    where = f"teacher {trial.teacher_key} seed 1"
    assert lines[0].startswith(f"{where}: step 5/10, train loss ") and "val macro-F1" not in lines[0]
    assert lines[-1].startswith(f"{where}: step 10/10, train loss ")
    losses = [loss for _, loss in trained[0]["seeds"][0]["train_loss"]]
    assert [float(line.split("train loss ")[1].split(",")[0]) for line in lines] == pytest.approx(losses, abs=1e-4)
    assert json.loads((path / "teacher.json").read_text())["key"] == trial.teacher_key
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(path)  # loads: the rebuilt one is whole


def _teacher_files(path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_an_interrupted_teacher_resumes_from_its_last_evaluation_bit_for_bit(tmp_path, kdtune_cache):
    """Two seeds, evaluated every 5 steps; the run stops during seed 2 after its step-10 checkpoint.
    The next try does not train seed 1 again (the best seed: its weights come from its checkpoint),
    continues seed 2 from step 10, and ends with the same teacher, weights and record as a run never
    interrupted (dropout masks included). A checkpoint that cannot be used (unreadable, or written
    on another kind of device) is set aside and its seed trained from the start, to the same end."""
    from kdtune.training.teacher_store import ensure_teacher, resume_path, teacher_path

    def teacher(seeds):
        trial = make_trial({**TRIAL, "teacher_max_steps": 20, "teacher_eval_steps": 5, "teacher_seeds": seeds})
        ref: list = []
        ensure_teacher(trial, tmp_path / f"ref{seeds}", on_trained=lambda info, f: ref.append(info), log=lambda m: None)
        return trial, ref[0], teacher_path(tmp_path / f"ref{seeds}", trial.teacher_key)

    seeds = [1, 2]
    trial, ref, ref_path = teacher(seeds)
    if ref["best_seed"] != seeds[0]:  # order the seeds so that the best one ends before the cut
        seeds = seeds[::-1]
        trial, ref, ref_path = teacher(seeds)
    assert ref["best_seed"] == seeds[0]
    where = f"teacher {trial.teacher_key}"

    class Stop(Exception):
        pass

    def stop_in_second_seed(line: str) -> None:
        if f"seed {seeds[1]}: step 15/" in line:  # logged before step 15's evaluation: the checkpoint is step 10's
            raise Stop

    def cut(store):
        with pytest.raises(Stop):
            ensure_teacher(trial, store, log=lambda m: None, progress=stop_in_second_seed)
        path = teacher_path(store, trial.teacher_key)
        assert not path.exists()
        steps = {d.name: json.loads((d / "meta.json").read_text())["step"] for d in resume_path(path).iterdir()}
        assert steps == {f"seed-{seeds[0]}": 20, f"seed-{seeds[1]}": 10}
        files = {d.name: sorted(f.name for f in d.iterdir()) for d in resume_path(path).iterdir()}
        assert files == {f"seed-{seeds[0]}": ["best.safetensors", "meta.json"],  # finished: best weights only
                         f"seed-{seeds[1]}": ["best.safetensors", "meta.json", "model.safetensors", "optim.pt"]}
        return path

    def finish(store):
        got, logs, lines = [], [], []
        ensure_teacher(trial, store, on_trained=lambda info, f: got.append(info), log=logs.append, progress=lines.append)
        trained = [line.split(": step ")[0] + " " + line.split(": step ")[1].split("/")[0] for line in lines if ": step " in line]
        path = teacher_path(store, trial.teacher_key)
        assert not resume_path(path).exists()
        for info in (ref, got[0]):
            info.pop("train_seconds", None)
            info.pop("base_path", None)
        assert got[0] == ref  # best seed, best scores and steps, every logged training loss
        mine, theirs = _teacher_files(path), _teacher_files(ref_path)
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        return logs, trained

    cut(tmp_path / "cut")
    logs, trained = finish(tmp_path / "cut")
    assert f"{where} seed {seeds[0]}: resuming from step 20 of 20" in logs
    assert f"{where} seed {seeds[1]}: resuming from step 10 of 20" in logs
    assert trained == [f"{where} seed {seeds[1]} 15", f"{where} seed {seeds[1]} 20"]  # nothing trained twice

    path = cut(tmp_path / "spoiled")
    (resume_path(path) / f"seed-{seeds[0]}" / "best.safetensors").write_bytes(b"not a checkpoint")
    meta = resume_path(path) / f"seed-{seeds[1]}" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "device": "cuda"}))
    logs, trained = finish(tmp_path / "spoiled")
    assert len([m for m in logs if "not resumed" in m]) == 2 and "written on cuda" in " ".join(logs)
    assert trained == [f"{where} seed {s} {step}" for s in seeds for step in (5, 10, 15, 20)]  # both from the start


def test_a_slimmed_checkpoint_keeps_the_best_weights_and_nothing_an_unfinished_run_needs(tmp_path):
    """slim_checkpoint keeps best.safetensors + meta; loading it gives the best weights (in the
    state and in the model) and no optimizer. An unfinished checkpoint missing its optimizer file
    is an error, not a silent fresh optimizer."""
    from kdtune.training.checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint
    from kdtune.training.loop import TrainState

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    best = {k: v.detach().clone() + 1 for k, v in model.state_dict().items()}
    state = TrainState(step=20, best_score=0.5, best_step=10, best_weights=best, optimizer=opt.state_dict(),
                       scheduler={"last_epoch": 20}, history=[{"step": 10, "macro_f1": 0.5}], rng=None)
    for name in ("full", "broken", "slim"):
        save_checkpoint(tmp_path / name, model, state, {"device": "cpu"})
    (tmp_path / "broken" / "optim.pt").unlink()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "broken", torch.nn.Linear(4, 3))

    slim_checkpoint(tmp_path / "slim")
    assert sorted(f.name for f in (tmp_path / "slim").iterdir()) == ["best.safetensors", "meta.json"]
    other = torch.nn.Linear(4, 3)
    got, meta = load_checkpoint(tmp_path / "slim", other)
    assert meta["device"] == "cpu" and (got.step, got.best_score, got.best_step) == (20, 0.5, 10)
    assert got.optimizer is None and got.history == state.history
    assert all(torch.equal(got.best_weights[k], best[k]) for k in best)
    assert all(torch.equal(other.state_dict()[k], best[k]) for k in best)
    with pytest.raises(RuntimeError):  # weights that do not fit fail here, where a resume sets them aside
        load_checkpoint(tmp_path / "slim", torch.nn.Linear(4, 5))
    full, _ = load_checkpoint(tmp_path / "full", torch.nn.Linear(4, 3))
    assert full.optimizer is not None  # an unslimmed one still resumes mid-training

    # A teacher seed's resume takes a finished checkpoint only at its own last step: one finished
    # short of it would go on training from the best weights as if they were the live ones.
    from kdtune.training.teacher_store import resume

    fresh = torch.nn.Linear(4, 3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    logs: list = []
    assert resume(tmp_path / "slim", fresh, torch.device("cpu"), "macro_f1", 30, logs.append) is None
    assert "not resumed (at step 20 (finished), this seed has 30)" in logs[0] and not (tmp_path / "slim").exists()
    assert all(torch.equal(fresh.state_dict()[k], before[k]) for k in before)  # its own weights put back


def test_trial_checkpoint_round_trip_restores_weights_and_optimizer(tmp_path, kdtune_cache):
    from safetensors.torch import load_file

    import kdtune.training.trial as trial_lib
    from kdtune.training.teacher_store import ensure_teacher
    from kdtune.training.loop import Callbacks

    trial = make_trial({**TRIAL, "hidden_match": "linear", "hidden": 16})
    teacher_dir = ensure_teacher(trial, tmp_path, log=lambda m: None)
    built = trial_lib.build(trial, teacher_dir)
    ckpt = tmp_path / "ckpt"
    saved = {}

    def on_eval(step, metrics, state):
        if step == 10:
            trial_lib.save_checkpoint(ckpt, built, state, {"run_id": "abc"})
            saved["weights"] = {k: v.clone() for k, v in built.student.state_dict().items()}
            saved["proj"] = built.distiller.hidden_match.proj.weight.detach().clone()
            # A copy: training goes on and mutates the live state (the optimizer's moments in place).
            saved["state"] = copy.deepcopy(state)

    trial_lib.run(built, torch.device("cpu"), Callbacks(on_eval=on_eval))
    assert not list(tmp_path.glob(".ckpt.*"))  # no temporary folders left behind
    fresh = trial_lib.build(trial, teacher_dir)
    state, meta = trial_lib.load_checkpoint(ckpt, fresh)
    assert meta["run_id"] == "abc" and state.step == 10 == meta["step"]
    for k, v in saved["weights"].items():
        assert torch.equal(fresh.student.state_dict()[k], v), k
    assert torch.equal(fresh.distiller.hidden_match.proj.weight, saved["proj"])
    moments = saved["state"].optimizer["state"]
    assert state.optimizer["state"].keys() == moments.keys() and moments
    for index, slots in moments.items():  # AdamW: step count and both moments, bit for bit
        got = state.optimizer["state"][index]
        assert slots.keys() == got.keys() >= {"step", "exp_avg", "exp_avg_sq"}
        for name, value in slots.items():
            assert torch.equal(got[name], value), (index, name)
    assert state.scheduler == saved["state"].scheduler
    assert state.best_score == saved["state"].best_score
    assert set(load_file(ckpt / "best.safetensors")) == set(saved["weights"])
    # optimizer state is loaded with weights_only=True: only tensors and plain containers inside
    torch.load(ckpt / "optim.pt", weights_only=True)
