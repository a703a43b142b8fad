"""SAM-CP: SAM patches merged and labeled by composable prompts.

`samcp.Labeler.from_config().label(image)` labels one image with the shipped models;
`samcp.LabelerConfig(...)` names other models and settings.
"""


def __getattr__(name: str):
    if name == "Labeler":  # imported on first use: torch, SAM and CLIP load only when needed
        from samcp.labeler import Labeler

        return Labeler
    if name == "LabelerConfig":
        from samcp.config import LabelerConfig

        return LabelerConfig
    raise AttributeError(f"module 'samcp' has no attribute {name!r}")
