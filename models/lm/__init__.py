"""The fine-tuned language model: profiles, network, data module, LightningModule, trainer process, readout,
and the recommender that launches the trainer and serves its outputs."""
