"""Secrets: environment variable first, then the environment's secret scope; the development salt only locally."""

from __future__ import annotations

import pytest

from medallion import secrets
from medallion.config import ConfigError, load_settings
from medallion.secrets import hash_salt


def test_outside_local_a_job_refuses_to_start_without_a_secret_salt(monkeypatch):
    monkeypatch.delenv("MEDALLION_HASH_SALT", raising=False)
    with pytest.raises(ConfigError, match="needs a hash salt"):
        hash_salt(load_settings("prod"))
    monkeypatch.setenv("MEDALLION_HASH_SALT", "s3cret")
    assert hash_salt(load_settings("prod")) == "s3cret"
    monkeypatch.delenv("MEDALLION_HASH_SALT")
    assert hash_salt(load_settings("local"))  # local may use its documented development salt


class FakeDbutils:
    class secrets:  # noqa: N801 - mirrors dbutils.secrets
        calls: list = []

        @classmethod
        def get(cls, scope, key):
            cls.calls.append((scope, key))
            return {
                ("medallion-prod", "hash-salt"): "from-the-scope",
                ("medallion-prod", "smtp-password"): "smtp-from-the-scope",
            }.get((scope, key), "")


def test_secrets_come_from_the_environment_then_from_the_secret_scope(monkeypatch):
    FakeDbutils.secrets.calls = []
    settings = load_settings("prod")
    monkeypatch.setenv("MEDALLION_HASH_SALT", "from-the-cluster-env")
    assert secrets.read_secret(settings, "hash_salt", dbutils=FakeDbutils) == "from-the-cluster-env"
    assert FakeDbutils.secrets.calls == []
    monkeypatch.delenv("MEDALLION_HASH_SALT")
    monkeypatch.delenv("MEDALLION_SMTP_PASSWORD", raising=False)
    assert secrets.read_secret(settings, "hash_salt", dbutils=FakeDbutils) == "from-the-scope"
    assert secrets.read_secret(settings, "smtp_password", dbutils=FakeDbutils) == "smtp-from-the-scope"
    assert FakeDbutils.secrets.calls == [("medallion-prod", "hash-salt"), ("medallion-prod", "smtp-password")]
    with pytest.raises(ConfigError, match="has no secret 'api_key'"):
        secrets.read_secret(settings, "api_key", dbutils=FakeDbutils)


def test_on_databricks_the_salt_comes_from_the_environments_secret_scope(monkeypatch):
    monkeypatch.delenv("MEDALLION_HASH_SALT", raising=False)
    asked = []

    class Secrets:
        def get(self, scope, key):
            asked.append((scope, key))
            return "salt-from-the-scope"

    monkeypatch.setattr(secrets, "_dbutils", lambda: type("DBUtils", (), {"secrets": Secrets()})())
    dev = load_settings("dev")
    assert hash_salt(dev) == "salt-from-the-scope"
    assert asked == [(dev.env_cfg["secret_scope"], dev.env_cfg["secret_keys"]["hash_salt"])]


def test_a_secret_the_scope_does_not_hold_is_a_one_line_reason_naming_scope_and_key(monkeypatch):
    from databricks.sdk.errors import NotFound, PermissionDenied

    monkeypatch.delenv("MEDALLION_HASH_SALT", raising=False)
    for error in (NotFound("no secret hash-salt in scope"), PermissionDenied("user may not READ the scope")):

        class Secrets:
            def get(self, scope, key, error=error):
                raise error

        monkeypatch.setattr(secrets, "_dbutils", lambda: type("DBUtils", (), {"secrets": Secrets()})())
        with pytest.raises(ConfigError) as failure:
            hash_salt(load_settings("staging"))
        message = str(failure.value)
        assert "needs a hash salt" in message and "refusing to start" in message
        assert f"'hash-salt' could not be read from scope 'medallion-staging' ({type(error).__name__})" in message
        assert "\n" not in message and failure.value.__cause__ is None  # no trace of the SDK's message either
