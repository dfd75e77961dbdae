"""steprl's entry point: `python train.py [+experiment=NAME] [key=value ...]` (see README)."""

import hydra
from omegaconf import DictConfig

from steprl.hydra_resolvers import register

register()  # before Hydra composes: conf/hydra/default.yaml uses ${steprl.short:...}


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from steprl.train import run_job

    return run_job(cfg)


if __name__ == "__main__":
    main()
