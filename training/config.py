"""YAML configs: a dataset file plus a method file (plus ``key=value`` overrides) make a run."""

from __future__ import annotations

from pathlib import Path

import yaml

from .run import RunConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def merge(base: dict, extra: dict) -> dict:
    """Recursive dict update (later files and overrides win)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist (see {CONFIG_DIR} for examples)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values")
    return data


def override(text: str) -> dict:
    """``a.b=value`` (value parsed as YAML) -> ``{"a": {"b": value}}``."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value, e.g. net.filters=32")
    key, value = text.split("=", 1)
    out: dict = yaml.safe_load(value)
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(files: list[str | Path], overrides: list[str] = ()) -> RunConfig:
    data: dict = {}
    for f in files:
        data = merge(data, read_yaml(f))
    for o in overrides:
        data = merge(data, override(o))
    return RunConfig.from_dict(data)


def dataset_method_config(dataset: str, method: str, overrides: list[str] = ()) -> RunConfig:
    return load_config([CONFIG_DIR / f"{dataset}.yaml", CONFIG_DIR / "methods" / f"{method}.yaml"], overrides)
