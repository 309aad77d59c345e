"""The secrets of an environment — the hash salt, the SMTP password — read in one place, only when a job needs one.

A module of its own because settings and governance both needed secrets and each imported the other for them (the
one import cycle of the package). Settings now only describe where a secret is (`hash_salt_env`, `secret_scope`,
`secret_keys`, `allow_default_salt` of the environment in include/pipeline.yaml); this module reads it.

Where a secret comes from, first hit wins:
1. its environment variable (local runs; job clusters whose `spark_env_vars` hold a `{{secrets/…}}` reference);
2. the environment's Databricks secret scope, through dbutils (serverless runs);
3. for the salt only, and only where the environment allows it (`allow_default_salt`: local), the documented
   development salt.
A secret value is returned, never logged and never part of an error message.
"""

from __future__ import annotations

import os

from .config import ConfigError, Settings

SECRET_ENV_VARS = {"hash_salt": "MEDALLION_HASH_SALT", "smtp_password": "MEDALLION_SMTP_PASSWORD"}
DEVELOPMENT_SALT = "local-development-salt-not-a-secret"


def env_var(settings: Settings, name: str) -> str:
    """The environment variable that holds a secret (`hash_salt_env` of the environment for the salt)."""
    if name == "hash_salt":
        return settings.env_cfg.get("hash_salt_env", SECRET_ENV_VARS["hash_salt"])
    return SECRET_ENV_VARS.get(name, f"MEDALLION_{name.upper()}")


def _dbutils():
    try:
        from databricks.sdk.runtime import dbutils  # present on Databricks compute (serverless and clusters)
    except Exception as exc:  # off Databricks: the module is missing, or it finds no credentials
        raise ConfigError(f"no Databricks secret scope reachable here ({type(exc).__name__})") from None
    return dbutils


def read_secret(settings: Settings, name: str, dbutils=None) -> str:
    """A secret of the environment by its logical name (`hash_salt`, `smtp_password`): its environment variable,
    else the environment's secret scope (`secret_scope`, key from `secret_keys`)."""
    var = env_var(settings, name)
    value = os.environ.get(var)
    if value:
        return value
    scope = settings.env_cfg.get("secret_scope")
    key = (settings.env_cfg.get("secret_keys") or {}).get(name)
    if not scope or not key:
        raise ConfigError(
            f"environment {settings.env!r} has no secret {name!r}: set ${var} or "
            f"secret_scope/secret_keys.{name} in the config"
        )
    try:
        value = (dbutils or _dbutils()).secrets.get(scope=scope, key=key)
    except ConfigError:
        raise
    except Exception as exc:  # the SDK's NotFound / PermissionDenied, ...: its type only, never a value
        raise ConfigError(f"secret {key!r} could not be read from scope {scope!r} ({type(exc).__name__})") from None
    if not value:
        raise ConfigError(f"secret {key!r} in scope {scope!r} is empty")
    return value


def hash_salt(settings: Settings) -> str:
    """The salt for tokenizing direct identifiers: from a secret; the development salt only where allowed."""
    var = env_var(settings, "hash_salt")
    salt = os.environ.get(var)
    if salt:
        return salt
    if settings.env_cfg.get("allow_default_salt"):
        return DEVELOPMENT_SALT
    if settings.env_cfg.get("secret_scope"):  # serverless runs read it from the secret scope
        try:
            return read_secret(settings, "hash_salt")
        except ConfigError as exc:
            raise ConfigError(
                f"environment {settings.env!r} needs a hash salt in ${var} or in its secret scope "
                f"({exc}); refusing to start"
            ) from None
    raise ConfigError(f"environment {settings.env!r} needs a hash salt in ${var} (a secret); refusing to start")
