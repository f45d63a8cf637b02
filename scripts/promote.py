"""Gate the challenger against the champion, roll the champion back, or show who holds which alias.

``python scripts/promote.py [version=N] [dry_run=true]``, ``action=rollback [version=N]``, ``action=status``;
prints the result as JSON. Exit status: 0 promoted (or rolled back, or a dry run that would promote, or a
champion exists), 1 refused by the gate, 2 error (one line on stderr: unreachable store, unknown model, no
challenger, no champion, ...). See configs/promote.yaml.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise

import hydra
from omegaconf import DictConfig, OmegaConf

import seismic.config  # noqa: F401  (registers the config schemas)


@hydra.main(version_base="1.3", config_path="../configs", config_name="promote")
def main(cfg: DictConfig) -> None:
    from seismic.registry.policy import GateConfig
    from seismic.registry.store import RegistryError, aliases, connect

    try:
        if cfg.action not in ("promote", "rollback", "status"):
            raise ValueError(f"action must be promote, rollback or status, got {cfg.action!r}")
        gate = GateConfig.from_mapping(OmegaConf.to_container(cfg.gate, resolve=True))
        client = connect(cfg.registry.tracking_uri, must_exist=True)
        if cfg.action == "status":
            held = aliases(client, cfg.registry.model_name)
            print(json.dumps(held, indent=2))
            if held["champion"] is None:
                raise RegistryError(f"{cfg.registry.model_name!r} has no champion yet")
            return
        from seismic.registry.gate import promote, rollback  # torch: only once the store is usable

        if cfg.action == "rollback":
            print(json.dumps(rollback(client, cfg.registry.model_name, to_version=cfg.version), indent=2))
            return
        decision = promote(
            client,
            cfg.registry.model_name,
            OmegaConf.to_container(cfg.data, resolve=True),
            gate,
            version=cfg.version,
            dry_run=cfg.dry_run,
        )
    except (RegistryError, FileNotFoundError, ValueError) as err:
        print(f"{cfg.action} failed: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(decision, indent=2))
    verdict = "promoted" if decision["promoted"] else "would promote" if decision["passed"] else "refused"
    print(f"{verdict}: {'; '.join(decision['reasons']) or 'passed the gate'}", file=sys.stderr)
    if not decision["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
