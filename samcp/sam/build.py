"""Build SAM: segment-anything's registry (`vit_h`, `vit_l`, `vit_b`) or a config
under `samcp/model_configs/sam_<name>.json` (`tiny`, `tiny8`), built from
segment-anything's own modules, with weights from any fsspec URI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from importlib import resources

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from samcp.checkpoint import load_weights
from samcp.shipped import checkpoint_file

# Where the package ships the weights of the small models it trained itself.


@dataclass(frozen=True)
class SamConfig:
    """Sizes of a SAM built from segment-anything's modules."""

    image_size: int
    patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    encoder_window_size: int
    prompt_embed_dim: int
    decoder_depth: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    iou_head_hidden_dim: int


def config_names() -> list[str]:
    files = resources.files("samcp.model_configs").iterdir()
    return sorted(f.name[len("sam_"):-len(".json")] for f in files if f.name.startswith("sam_"))


def architectures() -> list[str]:
    return sorted(set(sam_model_registry) - {"default"}) + config_names()


def _read_config(name: str) -> dict:
    path = resources.files("samcp.model_configs") / f"sam_{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown SAM architecture {name!r}; choose one of {architectures()}")
    return json.loads(path.read_text())


def load_config(name: str) -> SamConfig:
    raw = _read_config(name)
    raw.pop("patch_defaults", None)
    raw["encoder_global_attn_indexes"] = tuple(raw["encoder_global_attn_indexes"])
    return SamConfig(**raw)


def patch_defaults(architecture: str) -> dict:
    """Patch-generation settings that suit `architecture` (its config's `patch_defaults`);
    empty for the registry models, which keep segment-anything's defaults."""
    if architecture in sam_model_registry:
        return {}
    return dict(_read_config(architecture).get("patch_defaults", {}))


def sam_from_config(config: SamConfig) -> Sam:
    """A randomly initialised SAM of the given sizes."""
    embedding = config.image_size // config.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.encoder_global_attn_indexes,
            window_size=config.encoder_window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(embedding, embedding),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def build_sam(architecture: str = "tiny", checkpoint: str | None = "shipped",
              storage_options: dict | None = None) -> Sam:
    """SAM in eval mode. `checkpoint`: a path or fsspec URI, "shipped" for the
    package's own weights (tiny and tiny8), or None for random weights."""
    if architecture in sam_model_registry and architecture != "default":
        model = sam_model_registry[architecture](checkpoint=None)
    else:
        model = sam_from_config(load_config(architecture))
    checkpoint = checkpoint_file("sam", architecture, checkpoint)
    if checkpoint is not None:
        load_weights(model, checkpoint, architecture, storage_options)
    return model.eval()
