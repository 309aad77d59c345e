"""databricks.yml: loads, every target resolves to the names, identities and paths of include/pipeline.yaml as the
Databricks CLI would deploy them, every resource fits the bundle schema (the `databricks-bundles` models, which reject
unknown fields) and the CLI's default deployment engine, and the artifact is the versioned wheel the tests build.

The Databricks CLI is not installable here, so this file does what the CLI does for the subset this bundle uses,
ported from its Go source (github.com/databricks/cli, bundle/config/mutator/resourcemutator/apply_target_mode.go,
apply_presets.go, libs/textutil/textutil.go): the development-mode presets (name prefix "[dev <short name>] ", the
schema prefix "dev_<short name>_" unless experimental.skip_name_prefix_for_schema), then `${...}` references
(var.*, bundle.*, workspace.*, and resources.* after the presets, as the CLI resolves them)."""

from __future__ import annotations

import copy
import fnmatch
import re
import zipfile
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import ROOT

from medallion.config import load_raw

TARGETS = ("dev", "staging", "prod")
USER = {"short_name": "juan", "userName": "juan@example.com"}
# the deploying identity of staging/prod: a service principal (stand-in application id, no real one)
PRINCIPAL = {"short_name": "medallion-deployer", "userName": "00000000-0000-4000-8000-00000000abcd"}
TEAM = "claims"  # --var user=<team> for staging/prod


def deployer(target: str) -> dict:
    return USER if target == "dev" else PRINCIPAL


def cli_vars(target: str) -> dict:
    """The --var flags a deploy of the target passes (README)."""
    return {} if target == "dev" else {"user": TEAM, "service_principal": PRINCIPAL["userName"]}


def pipeline_for(target: str) -> dict:
    """include/pipeline.yaml as the Airflow side of that deployment loads it."""
    who = deployer(target)
    return load_raw(
        env={
            "MEDALLION_USER": USER["short_name"] if target == "dev" else TEAM,
            "MEDALLION_DATABRICKS_USER": who["userName"],
        }
    )


# --- ported from the Databricks CLI ---------------------------------------------------------------------------
# Resource groups the CLI's terraform engine deploys (bundle/deploy/terraform/pkg.go GroupToTerraformName); any other
# group is direct-engine only (bundle/config/mutator/validate_direct_only_resources.go), e.g. catalogs, instance_pools.
TERRAFORM_GROUPS = {
    "jobs",
    "pipelines",
    "models",
    "experiments",
    "model_serving_endpoints",
    "registered_models",
    "quality_monitors",
    "schemas",
    "clusters",
    "dashboards",
    "volumes",
    "apps",
    "secret_scopes",
    "alerts",
    "sql_warehouses",
    "database_instances",
    "database_catalogs",
    "synced_database_tables",
    "postgres_projects",
    "postgres_branches",
    "postgres_databases",
    "postgres_endpoints",
    "postgres_catalogs",
    "postgres_roles",
    "postgres_synced_tables",
}


def normalize_string(name: str) -> str:
    """libs/textutil NormalizeString: lower case, every non letter/digit to '_', runs of '_' squeezed, trimmed."""
    s = "".join(c if c.isalpha() or c.isdigit() else "_" for c in name.lower())
    return re.sub(r"_+", "_", s).strip("_")


def normalize_prefix(prefix: str) -> str:
    """apply_presets.go normalizePrefix: '[dev juan] ' -> 'dev_juan_'."""
    prefix = prefix.replace("[", "").strip(" ")
    return normalize_string(prefix) + ("_" if prefix.endswith("]") else "")


def apply_target_mode(cfg: dict, user: dict) -> None:
    """apply_target_mode.go transformDevelopmentMode: the presets development mode defaults."""
    if cfg["bundle"].get("mode") != "development":
        return
    presets = cfg.setdefault("presets", {})
    if not presets.get("name_prefix"):
        presets["name_prefix"] = f"[dev {user['short_name']}] "
    presets.setdefault("tags", {}).setdefault("dev", user["short_name"])
    presets.setdefault("jobs_max_concurrent_runs", 4)
    presets.setdefault("trigger_pause_status", "PAUSED")


def apply_presets(cfg: dict) -> None:
    """apply_presets.go, for the resource groups this bundle has: job names prefixed (plus tags and concurrency),
    schema names prefixed with the normalized prefix unless experimental.skip_name_prefix_for_schema."""
    presets = cfg.get("presets", {})
    prefix = presets.get("name_prefix", "")
    res = cfg.get("resources", {})
    for job in res.get("jobs", {}).values():
        job["name"] = prefix + job["name"]
        for key, value in sorted(presets.get("tags", {}).items()):
            job.setdefault("tags", {}).setdefault(key, value)
        if not job.get("max_concurrent_runs"):
            job["max_concurrent_runs"] = presets.get("jobs_max_concurrent_runs", 0)
    if not (cfg.get("experimental") or {}).get("skip_name_prefix_for_schema"):
        for schema in res.get("schemas", {}).values():
            schema["name"] = normalize_prefix(prefix) + schema["name"]


REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
TOP_LEVEL = {
    "bundle",
    "include",
    "variables",
    "artifacts",
    "sync",
    "targets",
    "resources",
    "workspace",
    "permissions",
    "run_as",
    "presets",
    "experimental",
    "scripts",
}
TARGET_KEYS = {
    "default",
    "mode",
    "workspace",
    "variables",
    "resources",
    "artifacts",
    "sync",
    "permissions",
    "run_as",
    "presets",
    "bundle",
    "git",
    "cluster_id",
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else copy.deepcopy(value)
        )
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


def resolve_target(bundle: dict, target: str, user: dict | None = None, flags: dict | None = None) -> dict:
    """The bundle as the CLI deploys it for one target: target merged, `--var` flags applied, development-mode presets
    applied, every ${...} resolved (fails on an unresolvable one). The deploying identity defaults to the target's
    (the developer for dev, the service principal otherwise)."""
    user = user or deployer(target)
    flags = cli_vars(target) if flags is None else flags
    tcfg = bundle["targets"][target]
    cfg = {k: v for k, v in bundle.items() if k != "targets"}
    for key in ("workspace", "resources", "artifacts", "sync", "presets", "run_as", "bundle", "experimental"):
        if key in tcfg:
            cfg[key] = _merge(cfg.get(key, {}), tcfg[key])
    if "permissions" in tcfg:
        cfg["permissions"] = tcfg["permissions"]
    if "mode" in tcfg:
        cfg["bundle"] = {**cfg["bundle"], "mode": tcfg["mode"]}
    variables = {name: spec.get("default") for name, spec in cfg.get("variables", {}).items()}
    for name, value in {**(tcfg.get("variables") or {}), **flags}.items():
        assert name in variables, f"target {target} sets undeclared variable {name}"
        variables[name] = value.get("default") if isinstance(value, dict) else value
    ws = cfg.setdefault("workspace", {})
    ws.setdefault(
        "root_path", "/Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}"
    )
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

    def sub(value, resources: bool):
        def one(m):
            return m.group(0) if m.group(1).startswith("resources.") and not resources else str(lookup(m.group(1)))

        if isinstance(value, str):
            whole = REF.fullmatch(value)
            if whole and (resources or not whole.group(1).startswith("resources.")):
                return lookup(whole.group(1))
            return REF.sub(one, value)
        if isinstance(value, dict):
            return {k: sub(v, resources) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v, resources) for v in value]
        return value

    def settle(resources: bool):
        nonlocal cfg
        for _ in range(10):
            before = repr(cfg)
            cfg = sub(cfg, resources)
            if repr(cfg) == before:
                break

    settle(resources=False)  # variables, bundle.*, workspace.*
    apply_target_mode(cfg, user)
    apply_presets(cfg)  # the CLI prefixes names before ${resources.*} references are resolved
    settle(resources=True)
    left = REF.findall(repr(cfg))
    assert not left, f"target {target}: unresolved references {sorted(set(left))}"
    return cfg


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


def test_the_bundle_loads_with_known_keys_and_three_targets(bundle):
    cfg, _ = bundle
    assert set(cfg) <= TOP_LEVEL, set(cfg) - TOP_LEVEL
    assert cfg["bundle"]["name"] == "medallion"
    assert tuple(cfg["targets"]) == TARGETS
    for name, target in cfg["targets"].items():
        assert set(target) <= TARGET_KEYS, (name, set(target) - TARGET_KEYS)
    assert cfg["targets"]["dev"]["mode"] == "development" and cfg["targets"]["dev"]["default"] is True
    assert cfg["targets"]["staging"]["mode"] == cfg["targets"]["prod"]["mode"] == "production"
    assert {"catalog", "schema", "user", "service_principal"} <= set(cfg["variables"])


def test_the_presets_port_prefixes_like_the_cli(bundle):
    """The port of the CLI's presets, checked against the CLI's own acceptance output
    (acceptance/bundle/resource_deps/resources_var_presets: schema `myschema` of user U deploys as `dev_U_myschema`)."""
    assert normalize_prefix("[dev juan] ") == "dev_juan_"
    assert normalize_prefix("[dev Juan.Pérez] ") == "dev_juan_pérez_"
    assert normalize_prefix("prod-") == "prod"  # no ']' -> no '_' added (the CLI's rule)
    without_opt_out = copy.deepcopy(bundle[0])
    without_opt_out.pop("experimental")
    dev = resolve_target(without_opt_out, "dev")
    assert dev["resources"]["schemas"]["data_eng"]["name"] == "dev_juan_data_eng"
    assert {v["schema_name"] for v in dev["resources"]["volumes"].values()} == {"dev_juan_data_eng"}
    assert dev["resources"]["jobs"]["medallion_cycle"]["name"] == "[dev juan] medallion-cycle-dev"
    prod = resolve_target(without_opt_out, "prod")  # production mode sets no prefix
    assert prod["resources"]["schemas"]["data_eng"]["name"] == "data_eng"


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_deploys_the_names_pipeline_yaml_reads(bundle, target):
    cfg = resolve_target(bundle[0], target)
    env = pipeline_for(target)["environments"][target]
    assert env["target"] == "databricks"
    # Unity Catalog: {env}_{user}.data_eng on both sides, after the CLI's presets
    (schema,) = cfg["resources"]["schemas"].values()
    assert schema["catalog_name"] == env["catalog"] == cfg["var"]["catalog"]
    assert schema["name"] == env["schema"] == "data_eng"
    assert env["catalog"] == (f"dev_{USER['short_name']}" if target == "dev" else f"{target}_{TEAM}")
    for volume in cfg["resources"]["volumes"].values():
        assert (volume["catalog_name"], volume["schema_name"]) == (env["catalog"], env["schema"])
    assert env["volume_root"] == f"/Volumes/{env['catalog']}/{env['schema']}"
    # secrets: the scope the jobs read is the scope the bundle creates
    (scope,) = cfg["resources"]["secret_scopes"].values()
    assert scope["name"] == env["secret_scope"]
    # the workspace folder the bundle syncs to is where Airflow's runs read the wheel and the config
    assert cfg["workspace"]["file_path"] == env["workspace_files"]
    (job,) = cfg["resources"]["jobs"].values()
    for task in job["tasks"]:
        assert task["python_wheel_task"]["named_parameters"] == {
            "env": target,
            "config": f"{env['workspace_files']}/include/pipeline.yaml",
            "user": env["catalog"].split("_", 1)[1],
            "analysts-group": cfg["var"]["analysts_group"],
        }


def test_no_resource_needs_the_direct_deployment_engine(bundle):
    """Catalogs (and instance pools) deploy with the CLI's direct engine only; the bundle selects no engine, so it
    declares none: the catalog is the platform team's, the bundle owns what is inside it."""
    cfg, _ = bundle
    engine = cfg["bundle"].get("engine")
    if engine != "direct":
        assert set(cfg["resources"]) <= TERRAFORM_GROUPS, set(cfg["resources"]) - TERRAFORM_GROUPS
    for target in TARGETS:
        assert set(resolve_target(cfg, target)["resources"]) <= TERRAFORM_GROUPS | ({"catalogs"} if engine else set())


@pytest.mark.parametrize("target", ["staging", "prod"])
def test_staging_and_prod_deploy_and_run_as_a_service_principal_in_its_own_folder(bundle, target):
    cfg = resolve_target(bundle[0], target)
    principal = PRINCIPAL["userName"]
    assert cfg["bundle"]["mode"] == "production"
    assert cfg["run_as"] == {"service_principal_name": principal}
    root = cfg["workspace"]["root_path"]
    assert root == f"/Workspace/Users/{principal}/.bundle/medallion/{target}" and "/Shared" not in root
    # nobody but the principal may change what it deployed: groups may view, the smoke job may be run
    assert all(p["level"] in ("CAN_VIEW", "CAN_RUN") for p in cfg.get("permissions", []))
    assert all(p["level"] != "CAN_MANAGE" for j in cfg["resources"]["jobs"].values() for p in j["permissions"])
    # Airflow's runs run as the same identity and read the same folder
    env = pipeline_for(target)["environments"][target]
    assert env["run_as"] == principal and env["workspace_files"] == f"{root}/files"
    # without the principal there is nothing to deploy to: the folder would be /Workspace/Users//...
    unset = resolve_target(bundle[0], target, flags={"user": TEAM})
    assert unset["run_as"] == {"service_principal_name": ""} and "/Users//" in unset["workspace"]["root_path"]


def test_dev_is_deployed_and_run_by_the_developer_in_their_folder(bundle):
    cfg = resolve_target(bundle[0], "dev")
    assert "run_as" not in cfg  # runs run as the deploying developer
    assert cfg["workspace"]["root_path"].startswith(f"/Workspace/Users/{USER['userName']}/")
    assert pipeline_for("dev")["environments"]["dev"]["run_as"] == USER["userName"]


def test_every_developer_has_their_own_secret_scope_and_the_run_identity_can_read_it(bundle):
    ana = {"short_name": "ana", "userName": "ana@example.com"}
    juan_scope = resolve_target(bundle[0], "dev")["resources"]["secret_scopes"]["medallion"]
    ana_scope = resolve_target(bundle[0], "dev", user=ana)["resources"]["secret_scopes"]["medallion"]
    assert juan_scope["name"] == "medallion-dev-juan" and ana_scope["name"] == "medallion-dev-ana"
    assert load_raw(env={"MEDALLION_USER": "ana"})["environments"]["dev"]["secret_scope"] == "medallion-dev-ana"
    for target in TARGETS:
        cfg = resolve_target(bundle[0], target)
        (scope,) = cfg["resources"]["secret_scopes"].values()
        # the scope's creator holds MANAGE (READ included): the deploying identity, which is the run identity
        run_identity = (cfg.get("run_as") or {}).get("service_principal_name") or deployer(target)["userName"]
        assert run_identity == deployer(target)["userName"]
        # and no ACL of the bundle takes that away or hands the scope to every engineer
        assert all(
            p.get("service_principal_name") != run_identity and p.get("user_name") != run_identity
            for p in scope.get("permissions", [])
        )
        assert all(p.get("group_name") != cfg["var"]["engineers_group"] for p in scope.get("permissions", []))


@pytest.mark.parametrize("target", TARGETS)
def test_every_path_a_job_writes_is_inside_a_declared_volume(bundle, target, monkeypatch):
    from medallion.config import load_settings
    from medallion.dashboard import dashboard_path

    cfg = resolve_target(bundle[0], target)
    volumes = {(v["catalog_name"], v["schema_name"], v["name"]) for v in cfg["resources"]["volumes"].values()}
    monkeypatch.setenv("MEDALLION_USER", USER["short_name"] if target == "dev" else TEAM)
    settings = load_settings(target)
    written = {key: settings.location(key) for key in ("landing", "staging", "checkpoints", "manifests")}
    written["dashboard"] = dashboard_path(settings)
    for what, path in written.items():
        parts = Path(path).parts
        assert parts[:2] == ("/", "Volumes") and len(parts) >= 5, (what, path)  # the volume or a path in it
        assert tuple(parts[2:5]) in volumes, f"{target}: {what} is written to {path}, outside every declared volume"


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
    grants = {
        (kind, key): {p for g in spec.get("grants", []) if g["principal"] == analysts for p in g["privileges"]}
        for kind in ("schemas", "volumes")
        for key, spec in res[kind].items()
    }
    assert grants[("schemas", "data_eng")] == {"USE_SCHEMA"}  # no SELECT on the whole schema ...
    assert all(not p for (kind, _), p in grants.items() if kind == "volumes")  # ... nor on raw files
    # ... SELECT comes table by table, for the gold layer only, from the jobs (governance.py)
    pipeline = load_raw(env={})
    gov = pipeline["governance"]
    assert gov["analysts_read_layers"] == ["gold"] and gov["analysts_group"] == analysts
    engineers = cfg["var"]["engineers_group"]
    assert any(
        g["principal"] == engineers and "WRITE_VOLUME" in g["privileges"] for g in res["volumes"]["landing"]["grants"]
    )


def test_the_artifact_is_the_versioned_wheel_the_tests_build(bundle, built_wheel, monkeypatch):
    from medallion.version import build_version, wheel_name
    from medallion_airflow import settings

    cfg, origin = bundle
    (artifact,) = cfg["artifacts"].values()
    assert artifact["type"] == "whl"
    project_dir = (ROOT / artifact["path"]).resolve()
    assert project_dir == ROOT / "spark_jobs"
    with (project_dir / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    # the build empties dist/ first, so the one wheel there is this build's
    assert artifact["build"].startswith("rm -rf dist && uv build --wheel"), artifact["build"]
    out_dir = artifact["build"].split("--out-dir")[1].split()[0]
    version = build_version(project_dir)
    name = wheel_name(project_dir)
    assert re.fullmatch(r"0\.1\.0\+src\.[0-9a-f]{12}", version) and built_wheel.name == name
    # Airflow submits exactly that file, from where the bundle syncs it
    pipeline = load_raw(env={})
    assert "wheel_file" not in pipeline["databricks"] and pipeline["databricks"]["wheel_package"] == project["name"]
    monkeypatch.delenv("MEDALLION_WHEEL_PATH", raising=False)
    settings._load.cache_clear()
    assert settings.databricks_settings("dev")["wheel_path"].endswith(f"/spark_jobs/dist/{name}")
    built_at = (project_dir / out_dir / name).relative_to(ROOT).as_posix()
    assert any(fnmatch.fnmatch(built_at, pattern) for pattern in cfg["sync"]["include"]), cfg["sync"]["include"]
    job_file = origin["jobs.medallion_cycle"]
    (env,) = cfg["resources"]["jobs"]["medallion_cycle"]["environments"]
    (dependency,) = env["spec"]["dependencies"]
    dependency_path = Path(dependency)
    assert (job_file.parent / dependency_path.parent).resolve() == project_dir / out_dir
    assert fnmatch.fnmatch(name, dependency_path.name)
    # the wheel holds the entry points every task runs, under the package name the tasks name
    dist_info = f"{project['name']}-{version}.dist-info"
    with zipfile.ZipFile(built_wheel) as whl:
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
        metadata = whl.read(f"{dist_info}/METADATA").decode()
        assert "medallion/governance.py" in whl.namelist() and "medallion/soda_spark_df.py" in whl.namelist()
    assert f"Name: {project['name']}" in metadata and f"Version: {version}" in metadata
    assert "pyspark" not in metadata.replace('extra == "local"', "")  # only through the `local` extra
    for task in cfg["resources"]["jobs"]["medallion_cycle"]["tasks"]:
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == project["name"]
        assert re.search(rf"^{re.escape(wheel_task['entry_point'])} = ", entry_points, re.M), wheel_task
    assert set(project["scripts"]) == {
        t["python_wheel_task"]["entry_point"] for t in cfg["resources"]["jobs"]["medallion_cycle"]["tasks"]
    }


def test_a_change_to_any_source_is_a_new_wheel_version(tmp_path):
    import shutil

    from medallion.version import build_version

    copy_dir = tmp_path / "spark_jobs"
    shutil.copytree(
        ROOT / "spark_jobs", copy_dir, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    )
    first = build_version(copy_dir)
    assert build_version(copy_dir) == first  # the same tree, the same version (Airflow and the build agree)
    (copy_dir / "medallion" / "gold.py").write_text((copy_dir / "medallion" / "gold.py").read_text() + "\n# x\n")
    second = build_version(copy_dir)
    assert second != first and second.startswith("0.1.0+src.")
    (copy_dir / "pyproject.toml").write_text((copy_dir / "pyproject.toml").read_text().replace("faker", "Faker"))
    assert build_version(copy_dir) not in (first, second)


def test_configuration_and_soda_checks_are_synced(bundle):
    include = bundle[0]["sync"]["include"]
    for path in ("include/pipeline.yaml", "include/soda/checks/patients.yml"):
        assert any(fnmatch.fnmatch(path, pattern) for pattern in include), path


def test_the_serverless_environment_matches_the_airflow_runs(bundle):
    cfg = resolve_target(bundle[0], "dev")
    pipeline = load_raw(env={})
    job = cfg["resources"]["jobs"]["medallion_cycle"]
    (env,) = job["environments"]
    serverless = pipeline["databricks"]["serverless_environment"]
    assert env["environment_key"] == serverless["environment_key"]
    assert env["spec"]["environment_version"] == serverless["spec"]["environment_version"] == "5"
    assert job["performance_target"] == serverless["performance_target"] == "PERFORMANCE_OPTIMIZED"
    # nothing reaches the runs through job-level environment variables (honoured by serverless only)
    assert "environment_variables" not in job
    assert all("environment_variables_key" not in t for t in job["tasks"])


def test_an_unresolvable_reference_is_reported(bundle):
    broken = copy.deepcopy(bundle[0])
    broken["resources"]["schemas"]["data_eng"]["name"] = "${var.no_such_variable}"
    with pytest.raises(KeyError, match="var.no_such_variable"):
        resolve_target(broken, "dev")
