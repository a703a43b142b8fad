"""Metrics: panoptic quality, patch quality."""
