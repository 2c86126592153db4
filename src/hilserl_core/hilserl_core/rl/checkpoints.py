"""Agent checkpoints: safetensors + JSON, atomic and durable, no pickle (RLPD and the grasp critic).

An agent writes ``<stem>.safetensors`` (every tensor: network weights, optimizer state as flat
tensors) and ``<stem>.json`` (format tag, config, step, optimizer param groups) into one
directory; the learner's checkpoints hold one such pair per agent. A file that cannot be read
raises ``AgentFileError``, which names the file and why (the learner's resume reports it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Mapping, Tuple

import torch

from ..formats.tensorio import fsync_dir

__all__ = ["AgentFileError", "strip_prefix", "write_agent_files", "read_agent_meta", "read_agent_files", "save_optimizer",
           "load_optimizer"]


class AgentFileError(ValueError):
    """An agent file that cannot be read; ``file`` is its path, the message ``<file>: <why>``."""

    def __init__(self, file: str | Path, why: str) -> None:
        super().__init__(f"{file}: {' '.join(why.split())}")
        self.file = Path(file)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def write_agent_files(directory: str | Path, stem: str, tensors: Mapping[str, torch.Tensor], meta: dict) -> None:
    """``<stem>.safetensors`` + ``<stem>.json`` in ``directory``, each replaced atomically
    and durably: written to a temporary file, fsynced, renamed, and the directory fsynced, so a
    crash or power cut leaves the old file or the new one, never a half-written or empty one."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{stem}.safetensors.tmp"
    save_file(dict(tensors), str(tmp))
    _fsync_and_replace(tmp, directory / f"{stem}.safetensors")
    tmp = directory / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    _fsync_and_replace(tmp, directory / f"{stem}.json")
    fsync_dir(directory)


def _fsync_and_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(final)


def read_agent_meta(directory: str | Path, stem: str) -> Tuple[dict, str]:
    """The JSON half of :func:`write_agent_files` and its path (for error messages)."""
    path = Path(directory) / f"{stem}.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # missing, unreadable, torn or empty
        raise AgentFileError(path, _why(exc)) from exc
    if not isinstance(meta, dict):
        raise AgentFileError(path, f"holds a JSON {type(meta).__name__}, not an object")
    return meta, str(path)


def read_agent_files(directory: str | Path, stem: str, fmt: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Tensors and metadata written by :func:`write_agent_files`; the format tag must be ``fmt``."""
    from safetensors.torch import load_file

    meta, where = read_agent_meta(directory, stem)
    if meta.get("format") != fmt:
        raise AgentFileError(where, f"format {meta.get('format')!r}, expected {fmt!r}")
    path = Path(directory) / f"{stem}.safetensors"
    try:
        return load_file(str(path)), meta
    except Exception as exc:  # noqa: BLE001 - missing, truncated ("incomplete metadata"), garbled: all name the file
        raise AgentFileError(path, _why(exc)) from exc


def save_optimizer(opt: torch.optim.Optimizer) -> Tuple[Dict[str, torch.Tensor], list]:
    """Optimizer state as flat tensors (``state/<i>/<key>``) + JSON-able param groups (no pickle)."""
    sd = opt.state_dict()
    tensors: Dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state/{idx}/{key}"] = t.detach().cpu().clone().contiguous()
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], param_groups: list) -> None:
    state: Dict[int, Dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": param_groups})
