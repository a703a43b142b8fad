"""SAM-CP: SAM patches merged and labeled by composable prompts.

`samcp.Labeler().label(image)` labels one image with the shipped models.
"""


def __getattr__(name: str):
    if name == "Labeler":  # imported on first use: torch, SAM and CLIP load only when needed
        from samcp.labeler import Labeler

        return Labeler
    raise AttributeError(f"module 'samcp' has no attribute {name!r}")
