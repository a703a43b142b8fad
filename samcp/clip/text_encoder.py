"""Class-name text embeddings from an open_clip model, cached on disk.

Any open_clip architecture name works (`ViT-B-16`, ...) with a checkpoint from a
local path or fsspec URI; `samcp-clip-tiny` is the package's own small config.
Without a checkpoint the model keeps a fixed-seed random initialisation: its
embeddings still tell the class names apart, which is enough for a closed
vocabulary, but not for names the head never saw. "shipped" is the package's own
trained `samcp-clip-tiny` (`jobs/train_clip.py`, `docs/models.md`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from contextlib import contextmanager
from importlib import resources

import open_clip
import torch
import torch.nn.functional as F

from samcp.checkpoint import file_sha256, load_weights
from samcp.shipped import checkpoint_file
from samcp.vocab import Vocabulary

open_clip.add_model_config(resources.files("samcp.model_configs") / "open_clip")

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "samcp", "text")


def unknown_words(vocab: Vocabulary, tokenizer, max_pieces: int = 3) -> dict[str, list[str]]:
    """{class name: its words (in names and synonyms) that the tokenizer cuts into more than
    `max_pieces` pieces}: words the text tower does not know whole, whose embeddings are weak.
    Empty for tokenizers without a per-word `encode`."""
    if not hasattr(tokenizer, "encode"):
        return {}
    found = {}
    for cls in vocab.classes:
        words = {w for name in cls.names for w in re.split(r"[\s\-_/]+", name.lower()) if w}
        rare = sorted(w for w in words if len(tokenizer.encode(w)) > max_pieces)
        if rare:
            found[cls.name] = rare
    return found


@contextmanager
def _quiet_random_init(quiet: bool):
    """Hides open_clip's warning that the model it builds is initialised randomly, when
    `quiet` (a checkpoint is loaded into it next)."""
    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()  # open_clip logs through the root logger
    if quiet:
        root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _checkpoint_digest(uri: str | None, storage_options: dict | None) -> str:
    return "random-seed-0" if uri is None else file_sha256(uri, storage_options)


def meta_clip(model_name: str) -> torch.nn.Module:
    """open_clip architecture `model_name` on the meta device: its shapes, no memory."""
    with _quiet_random_init(True), torch.device("meta"):
        return open_clip.create_model(model_name, pretrained=None, device="meta")


class TextEncoder:
    def __init__(self, model_name: str = "samcp-clip-tiny", checkpoint: str | None = None,
                 storage_options: dict | None = None, cache_dir: str | None = DEFAULT_CACHE,
                 device: str | torch.device = "cpu"):
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}")
        with torch.random.fork_rng(devices=[]), _quiet_random_init(checkpoint is not None):
            torch.manual_seed(0)
            self.model = open_clip.create_model(model_name, pretrained=None, device=device).eval()
        checkpoint = checkpoint_file("clip", model_name, checkpoint)
        if checkpoint is not None:
            load_weights(self.model, checkpoint, model_name, storage_options)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model_name = model_name
        self.dim: int = open_clip.get_model_config(model_name)["embed_dim"]
        self.cache_dir = cache_dir
        self.key = hashlib.sha256(
            f"{model_name}:{_checkpoint_digest(checkpoint, storage_options)}".encode()).hexdigest()[:16]

    @torch.no_grad()
    def embed(self, vocab: Vocabulary) -> torch.Tensor:
        """(C, T) normalized embeddings in the vocabulary's class order, from the cache when there.
        Warns about class names with words the tokenizer does not know (see `unknown_words`)."""
        for name, words in unknown_words(vocab, self.tokenizer).items():
            warnings.warn(f"vocabulary {vocab.name!r}, class {name!r}: the tokenizer of {self.model_name} "
                          f"splits {', '.join(map(repr, words))} into many pieces (an unknown word?); "
                          "its text embedding may not mean what the name says", stacklevel=2)
        path = None
        if self.cache_dir:
            path = os.path.join(self.cache_dir, f"{self.key}-{vocab.fingerprint()[:16]}.pt")
            if os.path.exists(path):
                return torch.load(path, weights_only=True)
        device = next(self.model.parameters()).device
        rows = []
        for cls in vocab.classes:
            tokens = self.tokenizer(vocab.prompts(cls)).to(device)
            features = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            rows.append(F.normalize(features.mean(0), dim=-1))
        embeddings = torch.stack(rows).cpu()
        if path:
            os.makedirs(self.cache_dir, exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}"
            torch.save(embeddings, tmp)
            os.replace(tmp, path)
        return embeddings
