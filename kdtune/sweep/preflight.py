"""Every check a sweep can make before any work starts: nothing is written, nothing trained.

Bad input raises `UsageError` naming the sweep file and key (or the flag): the storage folder,
GPUs asked for, `data_dir`, languages and partitions, the student's shape against the base
model, the Ray address and, last (a network round trip for a server), the tracking store.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdtune.config import SweepSpec, TrialConfig
from kdtune.errors import UsageError


def preflight(spec: SweepSpec, tracking_uri: str, store: Path, address: str | None) -> None:
    """Every check that needs no training; raises UsageError naming the key or file."""
    from kdtune import data
    from kdtune.tracking.runs import check_reachable

    where = spec.path
    if not writable(store):
        raise UsageError(f"{where}: storage: {store} is not writable")
    if spec.resources.gpu > 0 and address is None and not os.environ.get("RAY_ADDRESS"):
        import torch

        if torch.cuda.device_count() == 0:
            raise UsageError(f"{where}: resources.gpu: {spec.resources.gpu} asked for but this machine has no GPU; "
                             "set resources.gpu: 0 (or --set resources.gpu=0)")
    for t in spec.trials:
        if t.data_dir is not None and not Path(t.data_dir).is_dir():
            raise UsageError(f"{where}: data_dir: {t.data_dir} is not a folder")
        for key in ("languages", "train_partition", "eval_partition", "teacher_partition"):
            value = getattr(t, key)
            if value is None:
                continue
            try:
                data.languages(t.dataset, value, None if key == "languages" else t.languages)
            except UsageError as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
    for t in {(t.base_model, t.layers, t.hidden, t.head_mode, t.layer_map): t for t in spec.trials}.values():
        check_student_shape(t, where)
    check_ray_address(address or os.environ.get("RAY_ADDRESS"))
    check_reachable(tracking_uri)  # last: for a server this is a network round trip


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

    from kdtune.models.preset import PREFIX, get_spec

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
