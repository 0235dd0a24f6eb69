"""`run_bench`: every measurement of `kdtune bench`, in one process, on one model and machine.

Order: build the trial (peak memory measured from here) -> kdtune's KD path -> matmul FLOP/s at
the shapes it ran -> the TinyBERT-style reference -> matmul FLOP/s at the reference's shapes and a
large square product -> (optionally) the sweep overhead. The matmul rates are measured right
after the training they are the denominator for, so both see the same machine load.

MFU = achieved FLOP/s on real tokens (`kdtune.bench.flops`) / dense matmul FLOP/s at that path's
own shapes and precision (`kdtune.bench.matmul`); ``mfu_vs_square`` divides by a large square
product instead (the better "peak" on a GPU, where small products are launch-bound). The speedup's range pairs the extremes (fastest
kdtune sample over slowest reference sample, and the reverse).
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

GOALS = {"speedup": 4.0, "mfu": 0.5, "sweep_overhead": 0.10}
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
    batch_size: int = 32
    repeats: int = 5
    reference_steps: int = 3  # steps per timed sample of the reference loop
    threads: int | None = None  # torch threads on CPU; default: every CPU this process may use
    skip_sweep: bool = False
    sweep_steps: int | None = None  # None: one epoch of the English rows per trial
    compile: bool = False
    ablations: tuple[str, ...] = ()  # fast-path items to switch off one at a time (bench.ablations)
    pad_to: int = 128
    seed: int = 1
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

    from kdtune.bench import matmul
    from kdtune.bench.ablations import VARIANTS
    from kdtune.bench.ablations import variant as ablation_variant
    from kdtune.bench.flops import EncoderShape, layer_gemms
    from kdtune.bench.memory import peak_memory
    from kdtune.bench.overhead import sweep_overhead
    from kdtune.bench.paths import kdtune_path, reference_path
    from kdtune.bench.setup import parse_model, prepare
    from kdtune.errors import UsageError
    from kdtune.train import autocast_for, pick_device, seed_everything
    from kdtune import trial as trial_lib

    if opts.repeats < 1 or opts.batch_size < 1 or opts.reference_steps < 1:
        raise UsageError("--repeats, --batch-size and --reference-steps must be >= 1")
    device = pick_device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device visible to torch; use --device cpu")
    parse_model(opts.model)  # a bad name fails before any work
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
        rows = opts.batch_size * EPOCH_BATCHES
        log(f"preparing {opts.model} on {opts.dataset} ({rows} training rows)")
        prepared = prepare(opts.model, opts.dataset, opts.data_dir, workdir, batch_size=opts.batch_size,
                           rows=rows, seed=opts.seed, max_length=opts.pad_to)
        pad_to = prepared.trial.max_length
        rows = len(prepared.splits["train"])

        with peak_memory(device) as peak:
            built = trial_lib.build(prepared.trial, prepared.teacher_dir, splits=prepared.splits)
            student0 = {k: v.detach().clone() for k, v in built.student.state_dict().items()}
            teacher, student = EncoderShape.of(built.teacher), EncoderShape.of(built.student)
            log(f"kdtune path: {opts.repeats} timed samples of {GROUP_BATCHES} steps (+1 warm-up)")
            seed_everything(opts.seed)
            kd = kdtune_path(built, device, opts.repeats, GROUP_BATCHES, compile=opts.compile)
        kd_dtype = torch.bfloat16 if _autocasts(autocast_for(device, prepared.trial.precision)) else torch.float32
        log("matmul FLOP/s at the kdtune path's shapes")
        kd_mm = matmul.gemm_rate(layer_gemms(student, round(kd.tokens_per_batch)), device, kd_dtype, opts.repeats)

        log(f"reference path: {opts.repeats} samples of {opts.reference_steps} steps (+1 warm-up)")
        built.student.load_state_dict(student0)
        d = built.distiller
        rows_ds = built.inputs.train_loader(0).dataset
        ref = reference_path(built.student, d.teacher, rows_ds, built.tokenizer.pad_token_id, pad_to,
                             d.layer_map, d.hidden_match, opts.batch_size, device, opts.repeats,
                             opts.reference_steps, prepared.trial.lr, opts.seed)
        log("matmul FLOP/s at the reference's shapes, and a large square product")
        ref_mm = matmul.gemm_rate(layer_gemms(student, round(ref.tokens_per_batch)), device, torch.float32,
                                  opts.repeats)
        size = 4096 if device.type == "cuda" else 1024
        square = matmul.square_rate(size, device, kd_dtype, opts.repeats)
        square_fp32 = square if kd_dtype == torch.float32 else matmul.square_rate(size, device, torch.float32,
                                                                                   opts.repeats)
        ablations = {}
        for name in opts.ablations:
            # Paired: the full path is re-timed right before each variant, so a change in the
            # machine's load between variants does not masquerade as the item's effect.
            log(f"fast path without one item: {name} (and the full path again, just before it)")
            built.student.load_state_dict(student0)
            seed_everything(opts.seed)
            full = kdtune_path(built, device, opts.repeats, GROUP_BATCHES, compile=opts.compile)
            built.student.load_state_dict(student0)
            context, variant_built = ablation_variant(name, built, prepared, pad_to)
            seed_everything(opts.seed)
            with context:
                v = kdtune_path(variant_built, device, opts.repeats, GROUP_BATCHES,
                                compile=opts.compile or name == "compile")
            ablations[name] = {**v.to_dict(), "full_path_examples_per_s": full.examples_per_s.to_dict(),
                               "relative_throughput": v.examples_per_s.median / full.examples_per_s.median}
        del built, student0

        result["setup"] = {
            "model": prepared.label, "dataset": opts.dataset, "batch_size": opts.batch_size,
            "rows": rows, "repeats": opts.repeats, "reference_steps": opts.reference_steps, "pad_to": pad_to,
            "teacher": asdict(teacher), "student": asdict(student), "precision": str(kd_dtype).replace("torch.", ""),
            "compile": opts.compile,
        }
        result["matmul"] = {
            "kdtune_shapes": {"tokens": round(kd.tokens_per_batch), "flops_per_s": kd_mm.to_dict()},
            "reference_shapes": {"tokens": round(ref.tokens_per_batch), "flops_per_s": ref_mm.to_dict()},
            "square": {"size": size, "flops_per_s": square.to_dict(), "dtype": str(kd_dtype).replace("torch.", ""),
                       "fp32_flops_per_s": square_fp32.to_dict()},
        }
        result["kdtune"] = {**kd.to_dict(), "mfu": kd.flops_per_s.scaled(1 / kd_mm.median).to_dict(),
                            "mfu_vs_square": kd.flops_per_s.median / square.median}
        result["reference"] = {**ref.to_dict(), "mfu": ref.flops_per_s.scaled(1 / ref_mm.median).to_dict(),
                               "mfu_vs_square": ref.flops_per_s.median / square_fp32.median}
        result["speedup"] = {
            "median": kd.examples_per_s.median / ref.examples_per_s.median,
            "min": kd.examples_per_s.low / ref.examples_per_s.high,
            "max": kd.examples_per_s.high / ref.examples_per_s.low,
        }
        result["memory"] = peak.to_dict()
        result["ablations"] = ablations
        result["sweep"] = None
        if not opts.skip_sweep:
            kind, name = parse_model(opts.model)
            base = f"preset:{name}" if kind == "preset" else str(prepared.teacher_dir)
            result["sweep"] = sweep_overhead(base, opts.dataset, opts.data_dir, workdir / "sweep", device,
                                             max_steps=opts.sweep_steps, batch_size=opts.batch_size,
                                             max_length=pad_to, log=log)
    finally:
        torch.set_num_threads(previous_threads)
        tmp.cleanup()
    result["machine"]["load_average_end"] = load_average()
    result["goals"] = goals(result)
    return result


def _autocasts(ctx) -> bool:
    import torch

    return isinstance(ctx, torch.autocast)


def goals(result: dict) -> dict:
    """Each performance goal (`GOALS`) with its measured value and whether it is met."""
    out = {
        "speedup": {"target": GOALS["speedup"], "measured": result["speedup"]["median"]},
        "mfu": {"target": GOALS["mfu"], "measured": result["kdtune"]["mfu"]["median"]},
        "sweep_overhead": {"target": GOALS["sweep_overhead"],
                           "measured": result["sweep"]["overhead"] if result.get("sweep") else None},
    }
    for name, g in out.items():
        if g["measured"] is None:
            g["met"] = None
        elif name == "sweep_overhead":
            g["met"] = g["measured"] <= g["target"]
        else:
            g["met"] = g["measured"] >= g["target"]
    return out
