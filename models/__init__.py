"""The ML: recommenders, the fine-tuned LM, evaluation and serving (importing neither Prefect nor DuckDB).

``models.registry`` names every model; ``models.experiment`` fits and evaluates a split's models. Nothing is
imported here: each room loads its own heavy libraries when it is used.
"""
