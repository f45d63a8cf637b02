"""Validate the whole deployment configuration, like ``databricks bundle validate`` (``scripts/validate.py``).

Every config of every CLI (the ``@hydra.main`` scripts) is composed with Hydra's compose API for every
environment and for every option of every config group the CLI uses (``full``: every option under every
environment), then checked as the CLI checks it
(structured schemas, pydantic settings, the library's own validators) plus what the CLI would only find out
later: malformed tracking URIs, model sources and paths, launchers whose plugin cannot be imported. Mandatory
values (``???``) and environment variables the configs read (``${oc.env:...}``) get placeholders, reported as
notes. A model folder, when given, is checked on its own and against the serve, predict and monitor configs;
every YAML/JSON file under ``deploy/``, ``docker-compose*.yml`` and the GitHub workflows must parse.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from seismic.validation import clis, deploy
from seismic.validation.clis import placeholder_env
from seismic.validation.compose import PLUGIN_CONFIGS, Composition, ConfigTree, discover_clis, plan
from seismic.validation.model import ModelFolder
from seismic.validation.report import Problem, Report
from seismic.validation.sections import flat_keys, refine

__all__ = ["Problem", "Report", "main", "validate"]

_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
_ENV_VAR = re.compile(r"\$\{oc\.env:([A-Za-z_]\w*)\}")  # no default after a comma: the run needs it
USAGE = """usage: python scripts/validate.py [model=FOLDER] [cli=NAME,...] [env=NAME,...] [full=true]
                                  [config_dir=DIR] [root=DIR]

Composes each CLI's config under every environment and with every option of every group it uses (under
the default environment; full=true: under every environment) and checks them as the CLIs do; checks the
model folder, if given, against the serve, predict and monitor configs; parses every YAML/JSON under
deploy/, docker-compose*.yml and .github/workflows/. Exit status: 0 no problems, 1 problems (a numbered
list, each naming the file, the key and the reason), 2 bad arguments."""


def _references(node: object, prefix: str = "") -> dict[str, str]:
    """Keys whose value is nothing but ``${other.key}``, and that other key."""
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for name, child in node.items():
            out.update(_references(child, f"{prefix}.{name}" if prefix else str(name)))
        return out
    match = _REFERENCE.fullmatch(node) if isinstance(node, str) else None
    return {prefix: match[1]} if match else {}


def _placeholder(key: str, cfg: DictConfig, model: ModelFolder | None) -> str:
    if key in ("model_dir", "model.source"):
        if model is not None:
            return str(model.folder)
        return f"models:/{OmegaConf.select(cfg, 'registry.model_name', default='seismic-facies')}@champion"
    return f"/placeholder/{key}"


def _composition_error(
    err: Exception, comp: Composition, tree: ConfigTree, report: Report, self_last: bool
) -> None:
    text = str(err)
    primary = tree.rel(tree.root / f"{comp.config_name}.yaml")
    if isinstance(err, yaml.YAMLError) or any(
        str(tree.root / b.removeprefix("configs/")) in text for b in tree.broken
    ):
        return  # the YAML error itself is reported once, with its line
    where = re.search(r"^In '([^']+)'", text)
    file = primary
    if where and (tree.root / f"{where[1]}.yaml").is_file():
        file = tree.rel(tree.root / f"{where[1]}.yaml")
    missing = re.search(r"Could not (?:find|load) '([^']+)'", text)
    if missing:
        plugin = PLUGIN_CONFIGS.get(missing[1])
        if plugin and importlib.util.find_spec(plugin[0]) is None:
            report.note(
                f"{missing[1]} not checked: it comes with {plugin[0]}, not installed here ({plugin[1]})",
                comp.label,
            )
            return
        group, _, option = missing[1].rpartition("/")
        available = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        file = comp.defaults_entry(tree, group, option, self_last) or file
        hint = f"; available: {', '.join(available)}" if available else ""
        report.problem(
            file, group or missing[1], f"no config {option!r} in group {group!r}{hint}", comp.label
        )
        return
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else None
    key = getattr(cause, "full_key", None) or (re.search(r"full_key: (\S+)", text) or [None, ""])[1]
    lines = [ln for ln in (str(cause.msg) if cause and cause.msg else text).splitlines() if ln.strip()]
    reason = next(
        (ln for ln in lines if not ln.startswith(("In '", "    ")) and "raised while" not in ln), text
    )
    if not where and key:
        file = comp.attribute(tree, key, self_last)
    report.problem(file, key, reason.strip(), comp.label)


def check_composition(comp: Composition, tree: ConfigTree, report: Report, model: ModelFolder | None) -> None:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    _, self_last = tree.defaults(comp.config_name)
    keys: set[str] = set()  # the resolved config's dotted keys, once known
    references: dict[str, str] = {}  # key -> the key its value is a plain ${reference} to

    def problem(key: str, reason: str) -> None:
        key = refine(key, reason, keys)
        for _ in range(10):  # a copied value is fixed where it is written: report it there, once
            if key not in references:
                break
            key = references[key]
        file = comp.attribute(tree, key, self_last)
        if file not in tree.broken:
            report.problem(file, key, reason, comp.label)

    def note(text: str) -> None:
        report.note(text, comp.label)

    comp.guess_choices(tree)
    try:
        cfg = compose(config_name=comp.config_name, overrides=comp.overrides, return_hydra_config=True)
    except Exception as err:  # Hydra's composition errors come in several types; all name the file
        _composition_error(err, comp, tree, report, self_last)
        return
    comp.choices = dict(cfg.hydra.runtime.choices)
    with placeholder_env(set(_ENV_VAR.findall(OmegaConf.to_yaml(cfg))), note):
        with open_dict(cfg):
            cfg.hydra.job.name = comp.cli  # as in a real run: the script's name (it names the run folders)
            cfg.hydra.runtime.cwd = os.getcwd()
            try:
                cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
            except OmegaConfBaseException as err:
                problem(
                    f"hydra.{err.full_key}" if err.full_key else "hydra.run.dir", str(err).splitlines()[0]
                )
                return
        HydraConfig.instance().set_config(cfg)
        hydra = {}
        for part in ("callbacks", "sweeper", "launcher"):
            try:
                hydra[part] = OmegaConf.to_container(cfg.hydra[part], resolve=True)
            except OmegaConfBaseException as err:  # e.g. an interpolation of the launcher's folder
                problem(f"hydra.{part}", str(err).splitlines()[0])
        with open_dict(cfg):
            cfg.pop("hydra")
        references.update(_references(OmegaConf.to_container(cfg, resolve=False)))
        placeholders = {}
        declared = comp.mandatory(tree, self_last)
        try:
            missing = sorted(OmegaConf.missing_keys(cfg))  # resolves interpolations on its way
        except OmegaConfBaseException as err:
            problem(err.full_key or "", str(err.msg or err).splitlines()[0])
            return
        for key in missing:
            placeholders[key] = _placeholder(key, cfg, model)
            note(f"{key} is mandatory (???), given on the command line: checked with {placeholders[key]}")
        for key, file in declared.items():
            if key not in placeholders and OmegaConf.select(cfg, key, default=0) is None:
                # merging ??? onto a structured schema's default keeps the default: Hydra stops nothing
                placeholders[key] = _placeholder(key, cfg, model)
                note(
                    f"{key} is ??? in {file} but its schema's default null wins, so a run without it is not "
                    f"stopped at composition: checked with {placeholders[key]}"
                )
        for key, value in placeholders.items():
            OmegaConf.update(cfg, key, value, force_add=True)
        try:
            OmegaConf.resolve(cfg)
        except OmegaConfBaseException as err:
            problem(err.full_key or "", str(err.msg or err).splitlines()[0])
            return
        keys.update(flat_keys(OmegaConf.to_container(cfg)))
        ctx = clis.Context(problem, note, placeholders, hydra, model)
        try:
            clis.check(comp.cli, cfg, ctx)
        except Exception as err:  # a config shape no check foresaw: still one line, not a traceback
            problem("", f"could not be checked: {type(err).__name__}: {err}")


def validate(
    config_dir: str | Path,
    root: str | Path,
    *,
    clis_wanted: list[str] | None = None,
    envs: list[str] | None = None,
    model: str | Path | None = None,
    full: bool = False,
) -> Report:
    """Validate the CLIs of ``root``/scripts with the configs in ``config_dir``; parse root's deploy files."""
    from hydra import initialize_config_dir

    import seismic.config  # noqa: F401  (the structured schemas and the ${seismic.root:} resolver)

    config_dir, root = Path(config_dir).resolve(), Path(root).resolve()
    report = Report()
    tree = ConfigTree(config_dir)
    tree.parse_all()
    for rel, reason in tree.broken.items():
        report.problem(rel, "", reason)
    found = discover_clis(root / "scripts")
    unknown = sorted(set(clis_wanted or ()) - set(found))
    if unknown:
        raise ValueError(f"cli: unknown {unknown}; the CLIs are {sorted(found)}")
    unknown = sorted(set(envs or ()) - set(tree.options("env")))
    if unknown:
        raise ValueError(f"env: unknown {unknown}; the environments are {tree.options('env')}")
    folder = ModelFolder(model, report.problem) if model is not None else None
    report.model = str(model) if model is not None else None
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        for cli, config_name in found.items():
            if clis_wanted and cli not in clis_wanted:
                continue
            report.clis.append(cli)
            if not (config_dir / f"{config_name}.yaml").is_file():
                report.problem(
                    f"scripts/{cli}.py", "config_name", f"{config_name}.yaml is not in {config_dir}"
                )
                continue
            for comp in plan(tree, cli, config_name, envs, full):
                report.configurations += 1
                report.envs.update(o.removeprefix("env=") for o in comp.overrides if o.startswith("env="))
                check_composition(comp, tree, report, folder)
    report.yaml_files = deploy.check(root, report.problem)
    return report


def main(argv: list[str], root: Path) -> int:
    """``key=value`` arguments as the other CLIs take them; prints the report; returns the exit status."""
    options: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if arg in ("-h", "--help"):
            print(USAGE)
            return 0
        if not sep or key not in ("model", "cli", "env", "config_dir", "root", "full"):
            print(f"validate: unknown argument {arg!r}\n{USAGE}", file=sys.stderr)
            return 2
        options[key] = value
    root = Path(options.get("root", root))
    config_dir = Path(options.get("config_dir", root / "configs"))
    if not config_dir.is_dir():
        print(f"validate: config_dir {config_dir} is not a folder", file=sys.stderr)
        return 2
    split = {k: [v for v in options[k].split(",") if v] for k in ("cli", "env") if k in options}
    full = options.get("full", "false").lower()
    if full not in ("true", "false"):
        print(f"validate: full must be true or false, got {full!r}", file=sys.stderr)
        return 2
    try:
        report = validate(
            config_dir,
            root,
            clis_wanted=split.get("cli"),
            envs=split.get("env"),
            model=options.get("model"),
            full=full == "true",
        )
    except ValueError as err:
        print(f"validate: {err}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1
