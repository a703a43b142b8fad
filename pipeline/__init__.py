"""Corpus-scale plumbing: shards, Ray Data, Parquet output."""
