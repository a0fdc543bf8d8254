"""Recommenders behind the one contract (``models.base``): the baselines, LightFM, and the fusion."""

from typing import Literal

# LightFM's losses, spelled once (the model, TrainConfig and the command line read them here)
LightFMLoss = Literal["warp", "bpr", "logistic"]
