"""MLflow model registry: versions of exported models (:mod:`.store`), the champion/challenger gate
(:mod:`.gate`) and its rule (:mod:`.policy`, importable without torch). Import from the submodules."""
