"""Which configurations exist, composing them as the CLIs do, and naming the file a problem comes from.

The CLIs are the scripts decorated with ``@hydra.main`` (found by reading ``scripts/*.py``, so a new CLI is
validated without touching this module); the groups a CLI uses are the entries of its primary config's
defaults list, and their options the YAML files of each group folder.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# sweeps (-m, hydra/launcher=...) are a training feature: other CLIs run one job
SWEEP_CLIS = ("train",)
# group options a CLI refuses by design (make_survey generates synthetic surveys only)
NOT_FOR = {"make_survey": {"data": {"segy"}}}
# configs that plugins register in Hydra's ConfigStore: the module that registers each, and how to get it
PLUGIN_CONFIGS = {
    "hydra/launcher/submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "pip install -e '.[cluster]'"),
    "hydra/launcher/submitit_local": ("hydra_plugins.hydra_submitit_launcher", "pip install -e '.[cluster]'"),
    "hydra/sweeper/optuna": ("hydra_plugins.hydra_optuna_sweeper", "pip install hydra-optuna-sweeper"),
}
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


def discover_clis(scripts_dir: Path) -> dict[str, str]:
    """``{script stem: config name}`` of every ``@hydra.main(config_name=...)`` script."""
    clis = {}
    for script in sorted(scripts_dir.glob("*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func) in ("hydra.main", "main"):
                    names = [k.value for k in deco.keywords if k.arg == "config_name"]
                    if names and isinstance(names[0], ast.Constant):
                        clis[script.stem] = str(names[0].value)
    return clis


@dataclass
class ConfigTree:
    """The YAML files under one config folder, parsed once."""

    root: Path
    broken: dict[str, str] = field(default_factory=dict)  # relative path -> YAML error

    def rel(self, path: Path) -> str:
        return (
            str(Path("configs") / path.relative_to(self.root))
            if path.is_relative_to(self.root)
            else str(path)
        )

    def parse_all(self) -> None:
        for path in sorted(self.root.rglob("*.yaml")):
            try:
                self.load(path)
            except yaml.YAMLError as err:
                self.broken[self.rel(path)] = yaml_error(err)

    def load(self, path: Path) -> Any:
        return _load_yaml(path, path.stat().st_mtime_ns)

    def options(self, group: str) -> list[str]:
        folder = self.root / group
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []

    def defaults(self, config_name: str) -> tuple[list[tuple[str, str | None]], bool]:
        """A primary config's group entries ``(group, option)`` in order, and whether ``_self_`` is last."""
        try:
            data = self.load(self.root / f"{config_name}.yaml") or {}
        except yaml.YAMLError:  # reported with its line by parse_all
            return [], False
        groups, self_last = [], False
        for entry in data.get("defaults") or []:
            if isinstance(entry, dict):
                for group, option in entry.items():
                    if not str(group).startswith("override "):
                        groups.append((str(group).removeprefix("optional ").strip(), option))
                self_last = False
            elif entry == "_self_":
                self_last = True
        return groups, self_last

    def sweep_groups(self) -> list[str]:
        """Hydra's own groups that the project adds options to (``configs/hydra/launcher/``, ...)."""
        hydra = self.root / "hydra"
        return sorted(f"hydra/{p.name}" for p in hydra.iterdir() if p.is_dir()) if hydra.is_dir() else []

    def option_files(self, group: str, option: str) -> list[Path]:
        """The option's file and the files its own defaults pull in from the same group, highest first."""
        path = self.root / group / f"{option}.yaml"
        if not path.is_file():
            return []
        try:
            data = self.load(path) or {}
        except yaml.YAMLError:
            return [path]
        files = [path]
        for entry in (data.get("defaults") or []) if isinstance(data, dict) else []:
            if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
                files = [*files, *self.option_files(group, entry)]
        return files

    def package(self, path: Path) -> list[str]:
        """Where a file's keys land in the composed config (its ``@package`` header, else its group)."""
        match = _PACKAGE.search(path.read_text(encoding="utf-8"))
        relative = path.relative_to(self.root).parent
        if match and match.group(1) == "_global_":
            return []
        if match:
            return [p for p in match.group(1).replace("_group_", ".".join(relative.parts)).split(".") if p]
        return list(relative.parts)


@cache
def _load_yaml(path: Path, _mtime: int) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def yaml_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"invalid YAML: {where}{getattr(err, 'problem', None) or err}"


@dataclass
class Composition:
    """One configuration: a CLI, an environment and the overrides that select its group options."""

    cli: str
    config_name: str
    overrides: list[str]
    choices: dict[str, Any] = field(default_factory=dict)  # group -> option, as Hydra composed them
    placeholders: dict[str, str] = field(default_factory=dict)  # key -> value given for a ??? (mandatory) key

    def guess_choices(self, tree: ConfigTree) -> None:
        """The group options before composing (what Hydra reports once composition succeeds)."""
        groups, _ = tree.defaults(self.config_name)
        choices = dict(reversed(groups))  # Hydra's order: the last group of the defaults list first
        for override in self.overrides:
            group, _, option = override.partition("=")
            choices = {group: option, **{g: o for g, o in choices.items() if g != group}}
        self.choices = choices

    @property
    def label(self) -> str:
        return " ".join([self.cli, *self.overrides])

    def files(self, tree: ConfigTree, self_last: bool) -> list[Path]:
        """Candidate files of a key, highest precedence first (Hydra lists choices last group first)."""
        primary = tree.root / f"{self.config_name}.yaml"
        files = [primary] if self_last else []
        for group, option in self.choices.items():
            if option is not None and not group.startswith("hydra/"):
                files += tree.option_files(group, str(option))
        return files if self_last else [*files, primary]

    def attribute(self, tree: ConfigTree, key: str, self_last: bool) -> str:
        """The file that sets ``key`` (dotted) here; else its group's file; else the primary config."""
        parts = [p for p in key.split(".") if p]
        for path in self.files(tree, self_last):
            try:
                data = tree.load(path)
            except yaml.YAMLError:
                continue
            prefix = [] if path.parent == tree.root else tree.package(path)
            rest = parts[len(prefix) :]
            if parts[: len(prefix)] == prefix and (not rest or _has_key(data, rest)):
                return tree.rel(path)
        group = parts[0] if parts else ""
        if self.choices.get(group) is not None:
            return tree.rel(tree.root / group / f"{self.choices[group]}.yaml")
        return tree.rel(tree.root / f"{self.config_name}.yaml")

    def defaults_entry(self, tree: ConfigTree, group: str, option: str, self_last: bool) -> str | None:
        """The file whose defaults list selects ``group: option`` (an experiment's ``override /model: x``)."""
        for path in self.files(tree, self_last):
            try:
                data = tree.load(path) or {}
            except yaml.YAMLError:
                continue
            for entry in (data.get("defaults") or []) if isinstance(data, dict) else []:
                if isinstance(entry, dict):
                    for k, v in entry.items():
                        name = str(k).split()[-1].strip("/")
                        if (name == group or name.endswith(f"/{group}")) and str(v) == option:
                            return tree.rel(path)
        return None

    def mandatory(self, tree: ConfigTree, self_last: bool) -> dict[str, str]:
        """Keys a file of this composition marks ``???`` (given on the command line), with that file."""
        found: dict[str, str] = {}
        for path in reversed(self.files(tree, self_last)):  # lowest precedence first: later files win
            try:
                data = tree.load(path)
            except yaml.YAMLError:
                continue
            prefix = [] if path.parent == tree.root else tree.package(path)
            for key in _leaves(data, prefix, "???"):
                found[key] = tree.rel(path)
        return found


def _leaves(node: Any, prefix: list[str], value: Any) -> list[str]:
    if isinstance(node, dict):
        return [
            k
            for key, child in node.items()
            if key != "defaults"
            for k in _leaves(child, [*prefix, str(key)], value)
        ]
    return [".".join(prefix)] if node == value and prefix else []


def _has_key(node: Any, parts: list[str]) -> bool:
    """Whether ``parts`` is a path in ``node``; a key may itself hold dots (sweeper params)."""
    if not parts:
        return True
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if isinstance(node, dict) and name in node and _has_key(node[name], parts[i:]):
            return True
    return False


def plan(
    tree: ConfigTree, cli: str, config_name: str, envs: list[str] | None, full: bool = False
) -> list[Composition]:
    """The configurations of one CLI: its default under each environment, and every other option of every
    group it uses (one at a time, the rest at their defaults) under the default environment, or under each
    environment with ``full`` (the cross product: about three times the compositions, the same coverage of
    files; the environments only change values that the default configurations already check)."""
    groups, _ = tree.defaults(config_name)
    defaults = dict(groups)
    env_options = tree.options("env") if "env" in defaults else []
    chosen = [e for e in env_options if envs is None or e in envs] if env_options else [None]
    home = defaults.get("env") if defaults.get("env") in chosen else chosen[0]
    extra = [(g, o) for g, o in groups if g != "env"]
    if cli in SWEEP_CLIS:
        extra += [(g, "basic") for g in tree.sweep_groups()]
    compositions = []
    for env in chosen:
        base = [f"env={env}"] if env is not None else []
        compositions.append(Composition(cli, config_name, base))
        if env != home and not full:
            continue
        for group, default in extra:
            for option in tree.options(group):
                if option == default or option in NOT_FOR.get(cli, {}).get(group, ()):
                    continue
                compositions.append(Composition(cli, config_name, [*base, f"{group}={option}"]))
    return compositions
