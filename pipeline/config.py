"""Typed settings of a labeling job: which models label (`samcp.LabelerConfig`) and how the job runs
(`JobConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

from samcp.config import LabelerConfig
from samcp.data.decode import DecodeConfig

# The fields a labeling job's "run" flags set (`samcp.flags`); the rest have flags of their own.
RUN_FIELDS = ("actors", "num_gpus_per_actor", "cpus_per_actor", "batch_size", "overwrite", "ray_address")
# The fields the input flags set: how manifests, tables and folders are read (`pipeline.sources`).
INPUT_FIELDS = ("uri_column", "image_column", "key_column", "slice_size")


@dataclass(frozen=True)
class JobConfig:
    """A labeling run: shards in (tars, or slices of manifests, tables and folders: `pipeline.inputs`),
    one Parquet file per shard out, written by the actor that labeled it (see `pipeline.output`)."""

    inputs: tuple[str, ...]
    output: str
    uri_column: str | None = field(default=None, metadata={
        "help": "a Parquet or CSV --input is a manifest: the column of image URIs (s3://..., any URI)"})
    image_column: str | None = field(default=None, metadata={
        "help": "a Parquet --input holds the images (Hugging Face datasets): their column"})
    key_column: str | None = field(default=None, metadata={
        "help": "the column of sample keys (default: a manifest's URI, a table's <file>/<row>)"})
    slice_size: int = field(default=1000, metadata={
        "help": "samples per output file (the unit of resuming) of a manifest, table or folder"})
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    actors: int = field(default=1, metadata={"help": "labeling actors (model copies)"})
    num_gpus_per_actor: float = field(default=0.0, metadata={"help": "0: label on CPU"})
    cpus_per_actor: float | None = field(default=None, metadata={
        "help": "default: 1 with GPUs, else the cluster's CPUs shared by the actors (each also reads its "
                "shards on a thread)"})
    batch_size: int = field(default=4, metadata={"help": "images per labeling call"})
    storage_options: dict | None = None
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    write_attempts: int = 5  # tries to write a shard's labels (backoff 1, 2, 4, 8 s) before it fails
    overwrite: bool = field(default=False, metadata={
        "help": "delete labels already in --output and label everything again"})
    progress_every_s: float = 10.0
    ray_address: str | None = field(default=None, metadata={
        "help": "cluster to join (default: RAY_ADDRESS, else a local Ray)"})

    def __post_init__(self):
        if self.slice_size < 1:
            raise ValueError(f"--slice-size must be >= 1, got {self.slice_size}")
        if self.actors < 1:
            raise ValueError(f"--actors must be >= 1, got {self.actors}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.write_attempts < 1:
            raise ValueError(f"write_attempts must be >= 1, got {self.write_attempts}")
        if self.num_gpus_per_actor < 0:
            raise ValueError(f"--num-gpus-per-actor must be >= 0, got {self.num_gpus_per_actor}")


def package_version() -> str:
    try:
        return metadata.version("samcp-labeler")
    except metadata.PackageNotFoundError:
        return "unknown"
