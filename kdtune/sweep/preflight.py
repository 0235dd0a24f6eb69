"""Every check a sweep can make before any work starts: nothing is written, nothing trained.

Bad input raises `UsageError` naming the sweep file and key (or the flag): the storage folder,
the Ray address, one trial's resources against a single node (kdtune/sweep/resources_check.py),
`data_dir`, languages and partitions, the student's shape against the base model, the tracking
store (a network round trip for a server) and, last, hub base models, fetched into the Hugging
Face cache now (kdtune/models/resolve.py) so an unreachable hub is one line, not a task traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kdtune.config import SweepSpec, TrialConfig
from kdtune.errors import UsageError


def preflight(spec: SweepSpec, tracking_uri: str, store: Path, address: str | None) -> None:
    """Every check that needs no training; raises UsageError naming the key or file."""
    from kdtune import data
    from kdtune.data.sources import expand
    from kdtune.tracking.store import check_reachable  # no mlflow import: bad input fails fast

    where = spec.path
    if not writable(store):
        raise UsageError(f"{where}: storage: {store} is not writable")
    check_ray_address(address or os.environ.get("RAY_ADDRESS"))
    check_cluster_fits(spec, address, store)  # early: locally it needs no heavy imports
    for t in spec.checked:  # every known trial, and a search's space at its extremes
        if t.data_dir is not None and not Path(expand(t.data_dir)).is_dir():
            raise UsageError(f"{where}: data_dir: {t.data_dir} is not a folder")
        for key in ("languages", "train_partition", "eval_partition", "teacher_partition"):
            value = getattr(t, key)
            if value is None:
                continue
            try:
                data.languages(t.dataset, value, None if key == "languages" else t.languages)
            except UsageError as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
    for t in {(t.base_model, t.layers, t.hidden, t.head_mode, t.layer_map): t for t in spec.checked}.values():
        check_student_shape(t, where)
    check_reachable(tracking_uri)  # a network round trip for a server
    fetch_hub_models(spec, where)  # last: may download a model (once, into the Hugging Face cache)


def check_cluster_fits(spec: SweepSpec, address: str | None, store: Path) -> None:
    """One trial's resources must fit on a single node: the Ray cluster's, else this machine's counts."""
    from kdtune.sweep.resources_check import fit_error, local_node, request_of

    if address or os.environ.get("RAY_ADDRESS") or ("ray" in sys.modules and sys.modules["ray"].is_initialized()):
        import ray

        from kdtune.sweep.tuner import init_ray

        init_ray(address, store)  # connecting starts nothing; the ray.nodes() it gives are what Ray schedules on
        nodes, source = ray.nodes(), "the Ray cluster"
    else:  # the local Ray starts later with this machine's CPUs and GPUs
        nodes, source = [local_node(count_gpus=spec.resources.gpu > 0)], "this machine"
    problem = fit_error(request_of(spec.resources), nodes, spec.path, source)
    if problem:
        raise UsageError(problem)


def fetch_hub_models(spec: SweepSpec, where: str) -> None:
    """Hub base models into the Hugging Face cache now, in the driver; then their shapes are checked too."""
    from kdtune.models.resolve import fetch_base_model, is_hub_name

    fetched = set()
    for name in sorted({t.base_model for t in spec.checked if is_hub_name(t.base_model)}):
        fetch_base_model(name, where)
        fetched.add(name)
    for t in {(t.base_model, t.layers, t.hidden, t.head_mode, t.layer_map): t for t in spec.checked
              if t.base_model in fetched}.values():
        check_student_shape(t, where)


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """A host:port (or ray://host:port) address must accept a TCP connection; fail fast if not."""
    import socket

    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def check_student_shape(t: TrialConfig, where: str) -> None:
    """layers/hidden/layer_map against the teacher's shape, when it is known without downloading."""
    from kdtune.models.layer_map import resolve_layer_map
    from kdtune.models.student import student_config

    config = base_config(t.base_model)
    if config is None:  # a hub model not in the local cache: checked when the teacher is built
        return
    try:
        s_cfg = student_config(config, t.layers, t.hidden, t.head_mode)
        layer_map = list(t.layer_map) if isinstance(t.layer_map, tuple) else t.layer_map
        resolve_layer_map(layer_map, config.num_hidden_layers, s_cfg.num_hidden_layers)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc} (base_model {t.base_model}: {config.num_hidden_layers} layers, "
                         f"hidden {config.hidden_size}, {config.num_attention_heads} heads)") from None


def base_config(base_model: str):
    """The base model's config: from a preset's spec, a local folder, or the local hub cache."""
    from transformers import AutoConfig, XLMRobertaConfig

    from kdtune.models.preset import PREFIX, get_spec, is_packaged

    if base_model.startswith(PREFIX) and is_packaged(base_model[len(PREFIX):]):
        from kdtune.models.packaged import config

        return config(base_model[len(PREFIX):])  # UsageError naming the install command if absent
    if base_model.startswith(PREFIX):
        _, p = get_spec(base_model[len(PREFIX):])
        return XLMRobertaConfig(hidden_size=p.hidden, num_hidden_layers=p.layers,
                                num_attention_heads=p.heads, intermediate_size=p.intermediate)
    try:
        return AutoConfig.from_pretrained(base_model, local_files_only=True)
    except Exception:  # noqa: BLE001 - not available offline; not an input error
        if Path(base_model).expanduser().exists() or base_model.startswith(("/", "./", "../")):
            raise UsageError(f"base_model: {base_model} is not a model folder (no config.json)") from None
        return None


def writable(path: Path) -> bool:
    """Whether `path` can be created and written: probed in its nearest existing ancestor."""
    import tempfile

    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False
