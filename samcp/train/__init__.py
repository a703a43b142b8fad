"""Training without Ray: the SAM-CP head (examples, loop, criterion, label assignment), the small
SAM and the small CLIP."""
