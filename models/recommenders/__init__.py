"""Recommenders behind the one contract (``models.base``): the baselines, LightFM, and the fusion."""
