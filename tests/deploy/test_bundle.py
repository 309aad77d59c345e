"""databricks.yml: loads, every target resolves its variables, every resource fits the bundle schema (the
`databricks-bundles` models, which reject unknown fields), and the artifact is the wheel the tests build.

The Databricks CLI is not installable here, so `${...}` references are resolved the way the CLI does for the
subset this bundle uses: var.*, bundle.*, workspace.* and resources.* (with a stand-in current user)."""
from __future__ import annotations

import copy
import fnmatch
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from medallion.config import load_raw

TARGETS = ("dev", "staging", "prod")
USER = {"short_name": "juan", "userName": "juan@example.com"}
REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
TOP_LEVEL = {"bundle", "include", "variables", "artifacts", "sync", "targets", "resources", "workspace",
             "permissions", "run_as", "presets", "experimental", "scripts"}
TARGET_KEYS = {"default", "mode", "workspace", "variables", "resources", "artifacts", "sync", "permissions",
               "run_as", "presets", "bundle", "git", "cluster_id"}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else \
            copy.deepcopy(value)
    return out


def load_bundle() -> tuple[dict, dict[str, Path]]:
    """databricks.yml with its included resource files merged in; also which file each resource came from."""
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    origin: dict[str, Path] = {}
    for pattern in bundle.get("include", []):
        files = sorted(ROOT.glob(pattern))
        assert files, f"include {pattern!r} matches nothing"
        for path in files:
            part = yaml.safe_load(path.read_text())
            assert set(part) <= TOP_LEVEL, (path, set(part) - TOP_LEVEL)
            for kind, items in part.get("resources", {}).items():
                for key in items:
                    assert f"{kind}.{key}" not in origin, f"{kind}.{key} defined twice"
                    origin[f"{kind}.{key}"] = path
            bundle = _merge(bundle, part)
    return bundle, origin


def resolve_target(bundle: dict, target: str, user: dict = USER) -> dict:
    """The bundle as the CLI sees it for one target, every ${...} resolved (fails on an unresolvable one)."""
    tcfg = bundle["targets"][target]
    cfg = {k: v for k, v in bundle.items() if k != "targets"}
    for key in ("workspace", "resources", "artifacts", "sync", "presets", "run_as", "bundle"):
        if key in tcfg:
            cfg[key] = _merge(cfg.get(key, {}), tcfg[key])
    if "permissions" in tcfg:
        cfg["permissions"] = tcfg["permissions"]
    variables = {name: spec.get("default") for name, spec in cfg.get("variables", {}).items()}
    for name, value in (tcfg.get("variables") or {}).items():
        assert name in variables, f"target {target} sets undeclared variable {name}"
        variables[name] = value.get("default") if isinstance(value, dict) else value
    ws = cfg.setdefault("workspace", {})
    ws.setdefault("root_path", "/Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/"
                               "${bundle.target}")
    ws.setdefault("file_path", "${workspace.root_path}/files")
    ws.setdefault("artifact_path", "${workspace.root_path}/artifacts")
    ws["current_user"] = dict(user)
    cfg["bundle"] = {**cfg["bundle"], "target": target}
    cfg["var"] = variables

    def lookup(path: str):
        node = cfg
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(path)
            node = node[part]
        return node

    def sub(value):
        if isinstance(value, str):
            whole = REF.fullmatch(value)
            if whole:
                return lookup(whole.group(1))
            return REF.sub(lambda m: str(lookup(m.group(1))), value)
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    for _ in range(10):
        before = repr(cfg)
        cfg = sub(cfg)
        if repr(cfg) == before:
            break
    left = REF.findall(repr(cfg))
    assert not left, f"target {target}: unresolved references {sorted(set(left))}"
    return cfg


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel, built the way `make wheel` builds it (into a temporary folder)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^wheel:.*\n\t(.+)$", makefile, re.M).group(1)
    assert "uv build --wheel spark_jobs" in recipe, recipe
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "uv", "build", "-q", "--wheel", "spark_jobs", "--out-dir", str(out)],
                   cwd=ROOT, check=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_bundle_loads_with_known_keys_and_three_targets(bundle):
    cfg, _ = bundle
    assert set(cfg) <= TOP_LEVEL, set(cfg) - TOP_LEVEL
    assert cfg["bundle"]["name"] == "medallion"
    assert tuple(cfg["targets"]) == TARGETS
    for name, target in cfg["targets"].items():
        assert set(target) <= TARGET_KEYS, (name, set(target) - TARGET_KEYS)
    assert cfg["targets"]["dev"]["mode"] == "development" and cfg["targets"]["dev"]["default"] is True
    assert cfg["targets"]["prod"]["mode"] == "production"
    assert {"catalog", "schema", "user"} <= set(cfg["variables"])


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_resolves_to_the_environment_of_pipeline_yaml(bundle, target):
    cfg = resolve_target(bundle[0], target)
    pipeline = load_raw(env={"MEDALLION_USER": USER["short_name"], "MEDALLION_DATABRICKS_USER": USER["userName"]})
    env = pipeline["environments"][target]
    assert env["target"] == "databricks"
    # Unity Catalog: {env}_{user}.data_eng on both sides
    assert cfg["var"]["catalog"] == f"{target}_{USER['short_name']}" == env["catalog"]
    assert cfg["var"]["schema"] == "data_eng" == env["schema"]
    (catalog,) = cfg["resources"]["catalogs"].values()
    (schema,) = cfg["resources"]["schemas"].values()
    assert catalog["name"] == env["catalog"] and schema["catalog_name"] == env["catalog"]
    assert schema["name"] == env["schema"]
    # every storage location of the environment is a path inside one of the bundle's volumes
    volumes = {v["name"]: v for v in cfg["resources"]["volumes"].values()}
    for key in ("landing", "staging", "checkpoints", "manifests"):
        location = env[key].format(volume_root=env["volume_root"])
        parts = Path(location).parts
        assert parts[:2] == ("/", "Volumes"), location
        catalog_name, schema_name, volume = parts[2:5]
        assert volume in volumes, f"{key}: volume {volume!r} not declared in the bundle"
        assert (volumes[volume]["catalog_name"], volumes[volume]["schema_name"]) == (catalog_name, schema_name) \
            == (env["catalog"], env["schema"])
    # secrets: the scope the jobs read is the scope the bundle creates
    (scope,) = cfg["resources"]["secret_scopes"].values()
    assert scope["name"] == env["secret_scope"]
    # the workspace folder the bundle syncs to is where Airflow's runs read the wheel and the config
    assert cfg["workspace"]["file_path"] == env["workspace_files"]
    (job,) = cfg["resources"]["jobs"].values()
    for task in job["tasks"]:
        assert task["python_wheel_task"]["named_parameters"] == {
            "env": target, "config": f"{env['workspace_files']}/include/pipeline.yaml"}


@pytest.mark.parametrize("target", TARGETS)
def test_every_resource_fits_the_bundle_schema(bundle, target):
    from databricks.bundles.core._resource_type import _ResourceType
    models = {t.plural_name: t.resource_type for t in _ResourceType.all()}
    raw, resolved = bundle[0], resolve_target(bundle[0], target)
    for source in (raw["resources"], resolved["resources"]):
        for kind, items in source.items():
            assert kind in models, f"unknown resource type {kind}"
            for key, spec in items.items():
                model = models[kind].from_dict(copy.deepcopy(spec))  # raises on an unknown field or bad enum
                assert model.as_dict() == spec, f"{kind}.{key} changed through the bundle model"


def test_analysts_may_read_gold_only(bundle):
    cfg = resolve_target(bundle[0], "prod")
    analysts = cfg["var"]["analysts_group"]
    res = cfg["resources"]
    grants = {(kind, key): {p for g in spec.get("grants", []) if g["principal"] == analysts for p in g["privileges"]}
              for kind in ("catalogs", "schemas", "volumes") for key, spec in res[kind].items()}
    assert grants[("catalogs", "medallion_catalog")] == {"USE_CATALOG"}
    assert grants[("schemas", "data_eng")] == {"USE_SCHEMA"}  # no SELECT on the whole schema ...
    assert all(not p for (kind, _), p in grants.items() if kind == "volumes")  # ... nor on raw files
    # ... SELECT comes table by table, for the gold layer only, from the jobs (governance.py)
    pipeline = load_raw(env={})
    gov = pipeline["governance"]
    assert gov["analysts_read_layers"] == ["gold"] and gov["analysts_group"] == analysts
    engineers = cfg["var"]["engineers_group"]
    assert any(g["principal"] == engineers and "WRITE_VOLUME" in g["privileges"]
               for g in res["volumes"]["landing"]["grants"])


def test_the_artifact_is_the_wheel_the_tests_build(bundle, built_wheel):
    cfg, origin = bundle
    (artifact,) = cfg["artifacts"].values()
    assert artifact["type"] == "whl"
    project_dir = (ROOT / artifact["path"]).resolve()
    assert project_dir == ROOT / "spark_jobs"
    with (project_dir / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    assert artifact["build"].split()[:3] == ["uv", "build", "--wheel"]
    out_dir = artifact["build"].split("--out-dir")[1].split()[0]
    name = f"{project['name']}-{project['version']}-py3-none-any.whl"
    assert built_wheel.name == name
    pipeline = load_raw(env={})
    assert pipeline["databricks"]["wheel_file"] == name and pipeline["databricks"]["wheel_package"] == project["name"]
    # the bundle builds into spark_jobs/<out-dir>; sync uploads that wheel; the job's environment depends on it
    built_at = (project_dir / out_dir / name).relative_to(ROOT).as_posix()
    assert any(fnmatch.fnmatch(built_at, pattern) for pattern in cfg["sync"]["include"]), cfg["sync"]["include"]
    job_file = origin["jobs.medallion_cycle"]
    (env,) = cfg["resources"]["jobs"]["medallion_cycle"]["environments"]
    (dependency,) = env["spec"]["dependencies"]
    dependency_path = Path(dependency)
    assert (job_file.parent / dependency_path.parent).resolve() == project_dir / out_dir
    assert fnmatch.fnmatch(name, dependency_path.name)
    # the wheel holds the entry points every task runs, under the package name the tasks name
    with zipfile.ZipFile(built_wheel) as whl:
        entry_points = whl.read(f"{project['name']}-{project['version']}.dist-info/entry_points.txt").decode()
        metadata = whl.read(f"{project['name']}-{project['version']}.dist-info/METADATA").decode()
        assert "medallion/governance.py" in whl.namelist()
    assert f"Name: {project['name']}" in metadata and f"Version: {project['version']}" in metadata
    for task in cfg["resources"]["jobs"]["medallion_cycle"]["tasks"]:
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == project["name"]
        assert re.search(rf"^{re.escape(wheel_task['entry_point'])} = ", entry_points, re.M), wheel_task
    assert set(project["scripts"]) == {t["python_wheel_task"]["entry_point"]
                                       for t in cfg["resources"]["jobs"]["medallion_cycle"]["tasks"]}


def test_configuration_and_soda_checks_are_synced(bundle):
    include = bundle[0]["sync"]["include"]
    for path in ("include/pipeline.yaml", "include/soda/checks/patients.yml"):
        assert any(fnmatch.fnmatch(path, pattern) for pattern in include), path


def test_the_serverless_environment_matches_the_airflow_runs(bundle):
    cfg = resolve_target(bundle[0], "dev")
    pipeline = load_raw(env={})
    (env,) = cfg["resources"]["jobs"]["medallion_cycle"]["environments"]
    serverless = pipeline["databricks"]["serverless_environment"]
    assert env["environment_key"] == serverless["environment_key"]
    assert env["spec"]["environment_version"] == serverless["spec"]["environment_version"]
    variables = cfg["resources"]["jobs"]["medallion_cycle"]["environment_variables"][0]["spec"]["variables"]
    assert variables["MEDALLION_ENV"] == "dev" and variables["MEDALLION_USER"] == USER["short_name"]


def test_an_unresolvable_reference_is_reported(bundle):
    broken = copy.deepcopy(bundle[0])
    broken["resources"]["schemas"]["data_eng"]["name"] = "${var.no_such_variable}"
    with pytest.raises(KeyError, match="var.no_such_variable"):
        resolve_target(broken, "dev")
