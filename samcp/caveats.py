"""What the shipped models cannot label, said at run time rather than found out later.

The shipped CLIP (`samcp-clip-tiny`) and head were trained on the synthetic corpus only: they
name its 13 classes (and the patterned ones of `builtin:synthetic_attributes`) on images like
its own. A class it never saw is classified at about chance, 1 / the number of classes; a
photo gets confident names from `builtin:synthetic` that mean nothing. Labeling photos takes a
head trained for real SAM and CLIP weights: docs/train-on-coco.md.
"""

from __future__ import annotations

from samcp.vocab import Vocabulary, load_vocabulary

SHIPPED_CLIP = ("samcp-clip-tiny", "shipped")  # (model, checkpoint) of the package's own CLIP
# The vocabularies the shipped CLIP's text side was trained on (samcp.train.clip).
SHIPPED_CLIP_VOCABULARIES = ("builtin:synthetic", "builtin:synthetic_attributes")
TRAINING_GUIDE = "docs/train-on-coco.md"
CHANCE_FACTOR = 2.0  # a mean score below this many times chance (1 / classes) is "near chance"


def unseen_classes(clip_model: str, clip_checkpoint: str | None, vocab: Vocabulary) -> list[str]:
    """The classes of `vocab` (by name) that the shipped CLIP never saw in training: none of their
    names or synonyms is one it was trained on. [] for any other CLIP."""
    if (clip_model, clip_checkpoint) != SHIPPED_CLIP:
        return []
    known = {name.casefold() for spec in SHIPPED_CLIP_VOCABULARIES
             for c in load_vocabulary(spec).classes for name in c.names}
    return [c.name for c in vocab.classes if not any(name.casefold() in known for name in c.names)]


def unseen_warning(clip_model: str, clip_checkpoint: str | None, vocab: Vocabulary) -> str | None:
    """The warning for `unseen_classes`, or None when there are none."""
    unseen = unseen_classes(clip_model, clip_checkpoint, vocab)
    if not unseen:
        return None
    shown = ", ".join(unseen[:5]) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
    return (f"warning: the shipped CLIP (samcp-clip-tiny) was trained on the synthetic corpus only and "
            f"never saw {len(unseen)} of the {len(vocab.classes)} classes of vocabulary {vocab.name!r} "
            f"({shown}): expect scores near chance ({1 / len(vocab.classes):.2f}) and names that mean "
            f"little. To label photos, train a head for real SAM and CLIP weights: {TRAINING_GUIDE}")


def near_chance(mean_score: float | None, num_classes: int) -> bool:
    """Whether segments scored `mean_score` on average sit near chance for `num_classes` classes."""
    return mean_score is not None and num_classes > 1 and mean_score < CHANCE_FACTOR / num_classes


def chance_warning(mean_score: float | None, num_classes: int) -> str | None:
    """The warning for scores near chance, or None."""
    if not near_chance(mean_score, num_classes):
        return None
    return (f"warning: the segments' mean score {mean_score:.2f} is near chance for {num_classes} classes "
            f"({1 / num_classes:.2f}): the models do not know these classes or these images, and the "
            f"labels are close to guesses. See {TRAINING_GUIDE} for a head that knows them.")
