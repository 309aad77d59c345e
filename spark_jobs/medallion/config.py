"""Settings for a job: include/pipeline.yaml + environment variables + CLI flags, loaded in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENTITIES = ("patients", "claims", "medical_events")
# ${VAR:-default}: the default when VAR is unset or empty; ${VAR-default}: only when unset (so VAR="" switches off)
_VAR = re.compile(r"\$\{(\w+)(?:(:?-)([^}]*))?\}")


class ConfigError(ValueError):
    """Configuration is missing or invalid; the message is the one-line reason a job exits with."""


def project_root() -> Path:
    """The folder holding include/pipeline.yaml: $MEDALLION_HOME, else the source checkout of this package."""
    env = os.environ.get("MEDALLION_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "include" / "pipeline.yaml").is_file():
            return parent
    return Path.cwd()


def default_config_path() -> Path:
    return Path(os.environ.get("MEDALLION_CONFIG", project_root() / "include" / "pipeline.yaml"))


def _fill(match: re.Match, env: dict[str, str]) -> str:
    name, op, default = match.groups()
    if op == "-" and name in env:
        return env[name]
    return env.get(name) or (default or "")


def _expand(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        expanded = _VAR.sub(lambda m: _fill(m, env), value)
        # a value that is one placeholder takes the YAML type of what it expands to (numbers stay numbers)
        return yaml.safe_load(expanded) if whole and expanded else expanded
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    return value


def load_raw(path: str | Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The whole pipeline.yaml with ${VAR:-default} filled from the environment."""
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        raise ConfigError(f"pipeline config not found: {path}")
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict) or "environments" not in raw:
        raise ConfigError(f"pipeline config {path} has no 'environments' section")
    return _expand(raw, dict(os.environ) if env is None else env)


@dataclass(frozen=True)
class Settings:
    """Everything one job run needs to know, resolved for one environment."""

    env: str
    target: str  # local | databricks
    raw: dict[str, Any] = field(repr=False)
    env_cfg: dict[str, Any] = field(repr=False)
    root: Path = field(repr=False)

    # ---- locations -------------------------------------------------------------------------
    def location(self, key: str) -> str:
        """A storage location of this environment (landing, checkpoints, ...), placeholders resolved."""
        if key not in self.env_cfg:
            raise ConfigError(f"environment {self.env!r} has no location {key!r}")
        return self.resolve_path(self.env_cfg[key])

    def resolve_path(self, template: Any) -> str:
        """A path written in the config: `{placeholders}` filled from the environment's entry; a relative local path
        is relative to the project root."""
        value = str(template)
        for _ in range(3):
            value = value.format(**{k: v for k, v in self.env_cfg.items() if isinstance(v, str)})
        if self.is_local:
            p = Path(value)
            value = str(p if p.is_absolute() else (self.root / p).resolve())
        return value

    def project_file(self, path: str | Path) -> Path:
        """A file shipped with the project (code sets, SodaCL files): a relative path is relative to the project root
        — the folder holding include/ — on every target (a Databricks run starts in no particular folder)."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    @property
    def is_local(self) -> bool:
        return self.target == "local"

    @property
    def runtime(self) -> str:
        """What runs the jobs of a Databricks environment: `databricks`, or `open_source_spark` (the emulated
        workspace, `environments.emulated`), which has neither Auto Loader nor Unity Catalog's tags and grants."""
        return "local" if self.is_local else str(self.env_cfg.get("runtime") or "databricks")

    @property
    def auto_loader(self) -> bool:
        """Whether landing files are read with Auto Loader (`cloudFiles`, Databricks only) or Spark's file source."""
        return self.runtime == "databricks"

    @property
    def unity_catalog(self) -> bool:
        """Whether tables are Unity Catalog's (tags, grants) — not locally, not on open-source Spark."""
        return self.runtime == "databricks"

    @property
    def catalog(self) -> str | None:
        return self.env_cfg.get("catalog")

    @property
    def schema(self) -> str:
        return self.env_cfg.get("schema", "data_eng")

    # ---- sections --------------------------------------------------------------------------
    def table_name(self, layer: str, entity: str) -> str:
        try:
            return self.raw["tables"][layer][entity]
        except KeyError as exc:
            raise ConfigError(f"no table configured for {layer}.{entity}") from exc

    @property
    def generator(self) -> dict[str, Any]:
        return self.raw["generator"]

    @property
    def quality(self) -> dict[str, Any]:
        return self.raw["quality"]

    @property
    def local_spark(self) -> dict[str, Any]:
        return self.raw.get("local_spark", {})

    def landing_file(self, entity: str) -> str:
        return self.raw["landing_files"][entity]


def load_settings(
    env: str | None = None, config_path: str | Path | None = None, variables: dict[str, str] | None = None
) -> Settings:
    """Settings of one environment; `variables` fill `${VAR}` placeholders ahead of the process environment (the
    job's named parameters, so a run needs no environment variables to find its catalog)."""
    raw = load_raw(config_path, {**os.environ, **variables} if variables else None)
    env = env or os.environ.get("MEDALLION_ENV") or raw.get("default_env", "local")
    envs = raw["environments"]
    if env not in envs:
        raise ConfigError(f"unknown environment {env!r}; configured: {', '.join(sorted(envs))}")
    env_cfg = envs[env]
    target = env_cfg.get("target", "local")
    if target not in ("local", "databricks"):
        raise ConfigError(f"environment {env!r} has unknown target {target!r}")
    if env_cfg.get("runtime", "databricks") not in ("databricks", "open_source_spark"):
        raise ConfigError(f"environment {env!r} has unknown runtime {env_cfg['runtime']!r}")
    root = Path(config_path).resolve().parent.parent if config_path else project_root()
    return Settings(env=env, target=target, raw=raw, env_cfg=env_cfg, root=root)
