"""SAM: building its image encoder and mask decoder (the official registry or the small shipped
ones), cutting an image into patches with a batched point grid, resizing patch embeddings."""
