"""`astro dev start` as the Astro CLI builds it: the CLI's own compose template (tests/deploy/astro_cli/, commit in
SOURCE) rendered with the CLI's defaults, docker-compose.override.yml merged over it by `docker compose config`, and
each service the CLI starts checked for the mounts and environment the local target needs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import ROOT
from test_compose import compose_command

TEMPLATE = ROOT / "tests" / "deploy" / "astro_cli" / "composeyml.go.tmpl"
IMAGE = "medallion/airflow:latest"  # airflow.ImageName(project, "latest")
# The values the CLI renders the template with (config/config.go defaults; airflow/container.go generateConfig)
CLI_VALUES = {
    "ProjectName": "medallion",
    "PostgresUser": "postgres",
    "PostgresPassword": "postgres",
    "PostgresHost": "postgres",
    "PostgresPort": "5432",
    "PostgresRepository": "docker.io/postgres",
    "PostgresTag": "12.6",
    "AirflowImage": IMAGE,
    "AirflowAPIServerPort": "8080",
    "AirflowExposePort": False,
    "MountLabel": "z",
    "SettingsFile": "airflow_settings.yaml",
    "SettingsFileExist": True,
    "DuplicateImageVolumes": True,
}


def render_go_template(text: str, values: dict) -> str:
    """The subset of Go's text/template the CLI's compose template uses: {{ .Name }}, {{ if [not] .Name }} / {{ else }}
    / {{ end }}, and the {{- / -}} whitespace trims. Anything else raises, so a newer template is noticed."""
    tokens = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", text)
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (parent emitting, this branch taken)

    def emitting() -> bool:
        return all(parent and taken for parent, taken in stack)

    trim_next = False
    for token in tokens:
        match = re.fullmatch(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", token)
        if not match:
            if trim_next:
                token = token.lstrip()
            if emitting():
                out.append(token)
            trim_next = False
            continue
        left, action, right = match.groups()
        if left and out and emitting():
            out[-1] = out[-1].rstrip()
        trim_next = bool(right)
        if var := re.fullmatch(r"\.(\w+)", action):
            if emitting():
                out.append(str(values[var.group(1)]))
        elif cond := re.fullmatch(r"if (not )?\.(\w+)", action):
            value = bool(values[cond.group(2)])
            stack.append((emitting(), value != bool(cond.group(1))))
        elif action == "else":
            parent, taken = stack.pop()
            stack.append((parent, not taken))
        elif action == "end":
            stack.pop()
        else:
            raise AssertionError(f"template action the test does not render: {{{{ {action} }}}}")
    assert not stack
    return "".join(out)


def dockerfile_env(stage: str = "runtime") -> dict[str, str]:
    """ENV of a Dockerfile stage (what every container of the image starts with)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env, current = {}, None
    for line in text.splitlines():
        if m := re.match(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I):
            current = m.group(1)
        elif current == stage and line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


@pytest.fixture(scope="module")
def astro(tmp_path_factory) -> dict:
    """The merged project `astro dev start` would create, with a .env present (the CLI then adds env_file)."""
    work = tmp_path_factory.mktemp("astro")
    rendered = render_go_template(
        TEMPLATE.read_text(), {**CLI_VALUES, "AirflowHome": str(ROOT), "AirflowEnvFile": "env_file: .env"}
    )
    (work / "compose.yaml").write_text(rendered)
    (work / ".env").write_text("")
    out = subprocess.run(
        [*compose_command(), "--project-directory", str(work), "-f", str(work / "compose.yaml"), "-f",
         str(ROOT / "docker-compose.override.yml"), "config", "--format", "json"],
        cwd=work, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def airflow_services(project: dict) -> dict[str, dict]:
    """The long-running Airflow containers of the template (its image, not the one-off `airflow db migrate`)."""
    return {
        name: s
        for name, s in project["services"].items()
        if s.get("image") == IMAGE and "migrate" not in (s.get("command") or [])
    }


def container_env(service: dict) -> dict[str, str]:
    return {**dockerfile_env(), **{k: v for k, v in (service.get("environment") or {}).items() if v is not None}}


def named_volume_at(service: dict, path: str) -> str | None:
    """The named volume whose mount holds `path` in this container, if any."""
    for v in service.get("volumes", []):
        if v["type"] == "volume" and PurePosixPath(path).is_relative_to(v["target"]):
            return v["source"]
    return None


def local_paths(env: dict[str, str]) -> dict[str, str]:
    """Where the local target writes, resolved inside the container as the jobs resolve it (config.Settings)."""
    from medallion.config import Settings, load_raw

    raw = load_raw(ROOT / "include" / "pipeline.yaml", env)
    env_cfg = raw["environments"]["local"]
    settings = Settings(env="local", target="local", raw=raw, env_cfg=env_cfg, root=Path(env["MEDALLION_HOME"]))
    paths = {key: settings.location(key) for key in ("landing", "staging", "checkpoints", "warehouse", "manifests")}
    paths["dashboard"] = settings.resolve_path(raw["dashboard"]["path"]["local"])
    paths["ivy"] = settings.resolve_path(raw["local_spark"]["ivy_dir"])
    return paths


def test_the_template_renders_the_services_the_cli_starts(astro):
    services = astro["services"]
    assert set(airflow_services(astro)) == {"scheduler", "dag-processor", "triggerer", "api-server"}
    assert services["db-migration"]["command"] == ["airflow", "db", "migrate"]
    for name, service in airflow_services(astro).items():  # the CLI's own mounts survive the override
        binds = {v["target"]: v["source"] for v in service["volumes"] if v["type"] == "bind"}
        for folder in ("dags", "plugins", "include"):
            assert binds[f"/usr/local/airflow/{folder}"] == str(ROOT / folder), (name, folder)


def test_every_airflow_container_shares_one_lakehouse_and_ivy_cache(astro):
    """Data, checkpoints, the dashboard and Delta's jars live on named volumes, the same ones in every container: the
    api-server sees what the scheduler's jobs wrote, and nothing is lost when a container is recreated."""
    volumes_by_path: dict[str, set[str]] = {}
    for name, service in airflow_services(astro).items():
        env = container_env(service)
        assert env["MEDALLION_HOME"] == "/usr/local/airflow" and env["MEDALLION_TARGET"] == "local"
        for what, path in local_paths(env).items():
            volume = named_volume_at(service, path)
            assert volume, f"{name}: {what} ({path}) is not on a named volume"
            volumes_by_path.setdefault(what, set()).add(volume)
    assert all(len(v) == 1 for v in volumes_by_path.values()), volumes_by_path
    declared = set(astro.get("volumes", {}))
    assert set().union(*volumes_by_path.values()) <= declared


def test_the_volume_mount_points_exist_in_the_image_owned_by_the_airflow_user(astro):
    """A fresh named volume takes the owner of the image folder it is mounted on: the astro user must own the folders
    the lakehouse and Ivy volumes are mounted on, or the first job cannot write."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    made = [p for m in re.findall(r"mkdir -p ([^&]+)", dockerfile) for p in m.split()]
    owned = [p for m in re.findall(r"chown -R astro:0 ([^&]+)", dockerfile) for p in m.split()]
    service = airflow_services(astro)["scheduler"]
    assert service["user"] == "astro"
    targets = {
        v["target"]
        for v in service["volumes"]
        if v["type"] == "volume"
        and any(PurePosixPath(p).is_relative_to(v["target"]) for p in local_paths(container_env(service)).values())
    }
    assert targets
    for target in targets:
        assert target in made and any(PurePosixPath(target).is_relative_to(o) for o in owned), target


def test_smtp_default_resolves_in_every_airflow_container(astro):
    """smtp_default names a mail catcher every Airflow container can reach by name, and host.docker.internal (a
    catcher on the host) resolves on a Linux engine too."""
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    smtp = next(c for c in settings["connections"] if c["conn_id"] == "smtp_default")
    catcher = astro["services"][smtp["conn_host"]]
    assert catcher["image"].startswith("axllent/mailpit:")
    assert smtp["conn_port"] == 1025  # Mailpit's SMTP port (MP_SMTP_BIND_ADDR default 0.0.0.0:1025)
    assert "MP_SMTP_BIND_ADDR" not in (catcher.get("environment") or {})
    mailbox = catcher["environment"]["MP_DATABASE"]
    assert named_volume_at(catcher, mailbox), "the mailbox would vanish with the container"
    for name, service in airflow_services(astro).items():
        assert set(service["networks"]) & set(catcher["networks"]), name
        hosts = [h.replace("=", ":", 1) for h in service.get("extra_hosts", [])]
        assert "host.docker.internal:host-gateway" in hosts, name


def test_spark_is_sized_for_the_container_and_tasks_use_the_declared_pool(astro):
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    (pool,) = settings["pools"]
    for name, service in airflow_services(astro).items():
        env = container_env(service)
        assert env["MEDALLION_SPARK_POOL"] == pool["pool_name"], name
        memory = env["MEDALLION_SPARK_DRIVER_MEMORY"]
        assert re.fullmatch(r"\d+[mg]", memory), memory
    # not the pipeline's default heap (a laptop's single job): in the container each pool slot may run one such JVM
    pipeline = yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())
    default = re.search(r":-(\d+)g\}", pipeline["local_spark"]["driver_memory"]).group(1)
    assert int(memory[:-1]) / (1024 if memory.endswith("m") else 1) < int(default)
