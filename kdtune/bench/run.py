"""`run_bench`: every measurement of `kdtune bench`, in one process, on one model and machine.

Setup: a randomly initialised model of the preset's shape (`kdtune.bench.setup`), rows for 200
batches of the largest batch size. Then, for each batch size (default 32 and the paper's 8):
build the trial (peak memory measured from here, at the first batch size) -> kdtune's KD path
with the teacher run every step -> the teacher cache attached (built at the first batch size,
timed; reused at the next) -> the same path reading the cache, just after (the pair gives the
cache's effect) -> matmul FLOP/s at the shapes it ran -> the TinyBERT-style reference -> matmul
FLOP/s at the reference's shapes and a large square product -> the ablations. Then (optionally)
the sweep overhead. The matmul rates are measured right after the training they are the
denominator for, so both see the same machine load.

kdtune's path ("kdtune") is the trial's default, teacher cache on; "kdtune_no_cache" runs the
teacher every step. FLOPs count what runs: with the cache, the teacher's forward is not counted.
MFU = achieved FLOP/s on real tokens (`kdtune.bench.flops`) / dense matmul FLOP/s at that path's
own shapes and precision (`kdtune.bench.matmul`); ``mfu_vs_square`` divides by a large square
product instead (the goal's denominator: the machine's matrix units at their best). The
speedup's range pairs the extremes (fastest kdtune sample over slowest reference sample, and the
reverse). Ablations that switch an item off are timed on the path without the cache, so the teacher
items mean something; those that switch one on (compile, fused loss) on the default path.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

# (goal, batch size or None, target, ">=" or "<="): issue 9's speedup and sweep overhead, issue
# 17's MFU per batch size and the teacher cache's throughput gain at the paper's batch size,
# issue 27's used-vocabulary table on the vocabulary model (`kdtune.bench.vocab`).
GOALS = (
    ("speedup", 32, 4.0, ">="),
    ("mfu_vs_square", 32, 0.5, ">="),
    ("mfu_vs_square", 8, 0.25, ">="),
    ("teacher_cache", 8, 1.4, ">="),
    ("teacher_cache", 32, 1.4, ">="),
    ("sweep_overhead", None, 0.10, "<="),
    ("used_vocab", 8, 3.0, ">="),  # issue 27: the vocabulary model's step throughput, used vs full table
)
# LengthGroupedSampler sorts mega-batches of min(50, rows // (4 * batch)) batches: with 200 batches
# of rows they hold 50, as in a full-size run, and one timed sample of kdtune's path is one of them.
GROUP_BATCHES = 50
EPOCH_BATCHES = 4 * GROUP_BATCHES


@dataclass
class BenchOptions:
    model: str = "preset:small"  # preset:NAME or random:tiny|base (see kdtune.bench.setup)
    dataset: str = "massive"
    data_dir: str | None = None
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (32, 8)
    repeats: int = 5
    reference_steps: int = 3  # steps per timed sample of the reference loop
    threads: int | None = None  # torch threads on CPU; default: every CPU this process may use
    skip_sweep: bool = False
    sweep_steps: int | None = None  # None: one epoch of the English rows per trial
    compile: bool = False
    ablations: tuple[str, ...] = ()  # fast-path items to switch off one at a time (bench.ablations)
    pad_to: int = 128
    seed: int = 1
    # a second model measured with and without the used-vocabulary table (None: skip it)
    vocab_model: str | None = "random:e5-small"
    workdir: str | None = None


def cpus_available() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda msg: None) -> dict:
    from kdtune.quiet import quiet_transformers

    with quiet_transformers():  # "Loading weights" bars on every from_pretrained
        return _run_bench(opts, log)


def _run_bench(opts: BenchOptions, log: Callable[[str], None]) -> dict:
    import torch

    from kdtune.bench.ablations import VARIANTS
    from kdtune.bench.overhead import sweep_overhead
    from kdtune.bench.setup import parse_model, prepare
    from kdtune.errors import UsageError
    from kdtune.training.runtime import pick_device

    if opts.repeats < 1 or not opts.batch_sizes or min(opts.batch_sizes) < 1 or opts.reference_steps < 1:
        raise UsageError("--repeats, --batch-sizes and --reference-steps must be >= 1")
    device = pick_device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device visible to torch; use --device cpu")
    parse_model(opts.model)  # a bad name fails before any work
    vocab_skipped = vocab_model_missing(opts.vocab_model)
    unknown = [a for a in opts.ablations if a not in VARIANTS]
    if unknown:
        raise UsageError(f"--ablations: unknown item {unknown[0]!r}; allowed: all, {', '.join(VARIANTS)}")
    threads = opts.threads or cpus_available()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    result: dict = {
        "machine": {
            "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "torch_threads": threads, "cpus": cpus_available(), "torch": torch.__version__,
            "load_average_start": load_average(),
        },
    }
    tmp = tempfile.TemporaryDirectory(prefix="kdtune-bench-", dir=opts.workdir)
    try:
        workdir = Path(tmp.name)
        rows = max(opts.batch_sizes) * EPOCH_BATCHES
        log(f"preparing {opts.model} on {opts.dataset} ({rows} training rows)")
        started = time.perf_counter()
        prepared = prepare(opts.model, opts.dataset, opts.data_dir, workdir, batch_size=max(opts.batch_sizes),
                           rows=rows, seed=opts.seed, max_length=opts.pad_to)
        result["setup"] = {
            "model": prepared.label, "tokenizer": prepared.tokenizer, "dataset": opts.dataset,
            "rows": len(prepared.splits["train"]), "repeats": opts.repeats,
            "reference_steps": opts.reference_steps, "pad_to": prepared.trial.max_length, "compile": opts.compile,
            "seconds": time.perf_counter() - started,
        }
        result["batches"] = {}
        for i, batch_size in enumerate(opts.batch_sizes):
            result["batches"][str(batch_size)] = measure_batch(
                prepared, batch_size, opts, device, log, memory=i == 0, setup=result["setup"])
        result["memory"] = result["batches"][str(opts.batch_sizes[0])].pop("memory")
        result["vocab_model"] = {"skipped": vocab_skipped} if vocab_skipped else None
        if opts.vocab_model and not vocab_skipped:
            from kdtune.bench.vocab import measure_vocab_model

            result["vocab_model"] = measure_vocab_model(
                opts.vocab_model, opts.dataset, opts.data_dir, workdir, opts.batch_sizes, opts.repeats, device,
                opts.seed, opts.pad_to, log)
        result["sweep"] = None
        if not opts.skip_sweep:
            result["sweep"] = sweep_overhead(str(prepared.teacher_dir), opts.dataset, opts.data_dir, workdir / "sweep",
                                             device, max_steps=opts.sweep_steps, batch_size=max(opts.batch_sizes),
                                             max_length=prepared.trial.max_length, log=log)
    finally:
        torch.set_num_threads(previous_threads)
        tmp.cleanup()
    result["machine"]["load_average_end"] = load_average()
    result["goals"] = goals(result)
    return result


def measure_batch(prepared, batch_size: int, opts: BenchOptions, device, log, memory: bool, setup: dict) -> dict:
    """Every per-batch-size measurement (see the module doc); fills `setup` with the shapes."""
    import torch

    import kdtune.training.teacher_cache as teacher_cache
    import kdtune.training.trial as trial_lib
    import kdtune.bench.matmul as matmul
    from kdtune.bench.ablations import COMPILED, SWITCHED_ON
    from kdtune.bench.ablations import variant as ablation_variant
    from kdtune.bench.flops import EncoderShape, layer_gemms
    from kdtune.bench.memory import peak_memory
    from kdtune.bench.paths import kdtune_path, reference_path
    from kdtune.bench.vocab import pair as vocab_pair
    from kdtune.bench.timing import ratio
    from kdtune.training.runtime import autocast_for, seed_everything

    trial = dataclasses.replace(prepared.trial, batch_size=batch_size)
    pad_to = trial.max_length
    out: dict = {}
    log(f"batch {batch_size}: kdtune path, teacher run every step: {opts.repeats} timed samples of "
        f"{GROUP_BATCHES} steps (+1 warm-up)")
    with peak_memory(device) as peak:
        built = trial_lib.build(trial, prepared.teacher_dir, splits=prepared.splits)
        student0 = {k: v.detach().clone() for k, v in built.student.state_dict().items()}
        teacher, student = EncoderShape.of(built.teacher), EncoderShape.of(built.student)
        seed_everything(opts.seed)
        plain = kdtune_path(built, device, opts.repeats, GROUP_BATCHES, compile=opts.compile)
    if memory:
        out["memory"] = peak.to_dict()
    started = time.perf_counter()
    status = teacher_cache.attach(built, device, log)
    cache = built.distiller.teacher_cache
    out["teacher_cache"] = {"status": status, "seconds": time.perf_counter() - started,
                            "bytes": cache.bytes if cache else None, "folder": str(cache.folder) if cache else None}
    log(f"batch {batch_size}: kdtune path reading the teacher cache ({status})")
    built.student.load_state_dict(student0)
    seed_everything(opts.seed)
    kd = kdtune_path(built, device, opts.repeats, GROUP_BATCHES, compile=opts.compile)
    log(f"batch {batch_size}: kdtune path with the other embedding table (kdtune.models.vocab), just after")
    out["vocab"], full_built, full0 = vocab_pair(built, kd, prepared.splits, device, opts.repeats, GROUP_BATCHES,
                                                 opts.compile, opts.seed, log)
    kd_dtype = torch.bfloat16 if _autocasts(autocast_for(device, trial.precision)) else torch.float32
    log(f"batch {batch_size}: matmul FLOP/s at the kdtune path's shapes")
    kd_mm = matmul.gemm_rate(layer_gemms(student, round(kd.tokens_per_batch)), device, kd_dtype, opts.repeats)

    log(f"batch {batch_size}: reference path: {opts.repeats} samples of {opts.reference_steps} steps (+1 warm-up)")
    # The reference trains the full vocabulary, as TinyBERT's code does.
    ref_student, ref_state = (full_built.student, full0) if full0 is not None else (built.student, student0)
    ref_student.load_state_dict(ref_state)
    d = built.distiller
    rows_ds = built.inputs.train_loader(0).dataset
    ref = reference_path(ref_student, d.teacher, rows_ds, built.tokenizer.pad_token_id, pad_to,
                         d.layer_map, d.hidden_match, batch_size, device, opts.repeats,
                         opts.reference_steps, trial.lr, opts.seed)
    log(f"batch {batch_size}: matmul FLOP/s at the reference's shapes, and a large square product")
    ref_mm = matmul.gemm_rate(layer_gemms(student, round(ref.tokens_per_batch)), device, torch.float32,
                              opts.repeats)
    size = 4096 if device.type == "cuda" else 1024
    square = matmul.square_rate(size, device, kd_dtype, opts.repeats)
    square_fp32 = square if kd_dtype == torch.float32 else matmul.square_rate(size, device, torch.float32,
                                                                               opts.repeats)
    ablations = {}
    cached = d.teacher_cache
    for name in opts.ablations:
        # Items switched off re-time the path that runs the teacher (so the teacher items mean
        # something); items switched on (compile, fused loss) are tried on the default path.
        d.teacher_cache = cached if name in SWITCHED_ON else None
        # Paired: the full path is re-timed right before each variant, so a change in the
        # machine's load between variants does not masquerade as the item's effect.
        change = "with" if name in SWITCHED_ON else "without"
        log(f"batch {batch_size}: fast path {change} one item: {name} (and the full path again, just before it)")
        built.student.load_state_dict(student0)
        seed_everything(opts.seed)
        full = kdtune_path(built, device, opts.repeats, GROUP_BATCHES, compile=opts.compile)
        built.student.load_state_dict(student0)
        context, variant_built = ablation_variant(name, built, prepared, pad_to)
        seed_everything(opts.seed)
        with context:
            v = kdtune_path(variant_built, device, opts.repeats, GROUP_BATCHES,
                            compile=opts.compile or name in COMPILED)
        ablations[name] = {**v.to_dict(), "teacher_cache": d.teacher_cache is not None,
                           "full_path_examples_per_s": full.examples_per_s.to_dict(),
                           "relative_throughput": v.examples_per_s.median / full.examples_per_s.median}
    setup.update(teacher=asdict(teacher), student=asdict(student), precision=str(kd_dtype).replace("torch.", ""))
    out["matmul"] = {
        "kdtune_shapes": {"tokens": round(kd.tokens_per_batch), "flops_per_s": kd_mm.to_dict()},
        "reference_shapes": {"tokens": round(ref.tokens_per_batch), "flops_per_s": ref_mm.to_dict()},
        "square": {"size": size, "flops_per_s": square.to_dict(), "dtype": str(kd_dtype).replace("torch.", ""),
                   "fp32_flops_per_s": square_fp32.to_dict()},
    }
    for name, path, mm, sq in (("kdtune", kd, kd_mm, square), ("kdtune_no_cache", plain, kd_mm, square),
                               ("reference", ref, ref_mm, square_fp32)):
        out[name] = {**path.to_dict(), "mfu": path.flops_per_s.scaled(1 / mm.median).to_dict(),
                     "mfu_vs_square": path.flops_per_s.median / sq.median}
    out["speedup"] = ratio(kd, ref)
    out["cache_speedup"] = ratio(kd, plain)  # adjacent runs: the cache's paired effect
    out["ablations"] = ablations
    return out


def _autocasts(ctx) -> bool:
    import torch

    return isinstance(ctx, torch.autocast)


def goals(result: dict) -> dict:
    """Each goal of `GOALS` with its measured value and whether it is met (None: not measured)."""
    out = {}
    for name, batch, target, sign in GOALS:
        b = result["batches"].get(str(batch)) if batch else None
        if name == "sweep_overhead":
            measured = result["sweep"]["overhead"] if result.get("sweep") else None
        elif name == "used_vocab":  # on the vocabulary model, not the main one
            vm = (result.get("vocab_model") or {}).get("batches", {}).get(str(batch))
            measured = vm["speedup"]["median"] if vm else None
        elif b is None:
            measured = None
        elif name == "speedup":
            measured = b["speedup"]["median"]
        elif name == "mfu_vs_square":
            measured = b["kdtune"]["mfu_vs_square"]
        else:
            measured = b["cache_speedup"]["median"] if b["teacher_cache"]["status"] in ("built", "reused") else None
        met = None if measured is None else (measured >= target if sign == ">=" else measured <= target)
        out[f"{name}@{batch}" if batch else name] = {"target": target, "sign": sign, "measured": measured, "met": met}
    return out


def vocab_model_missing(model: str | None) -> str | None:
    """Why the vocabulary model cannot run here (its tokenizer's pip package is absent), or None."""
    from kdtune.bench.setup import parse_model
    from kdtune.errors import UsageError
    from kdtune.models.e5 import e5_tokenizer_file

    if model is None or parse_model(model) != ("random", "e5-small"):
        return None
    try:
        e5_tokenizer_file()
    except UsageError as err:
        return str(err)
    return None
