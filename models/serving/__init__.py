"""Serving: model bundles, the published-model folder, answering requests, and the promotion gate."""
