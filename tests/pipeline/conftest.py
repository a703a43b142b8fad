"""A small labeling output shared by the export and report tests."""

import pytest

from pipeline.labeling import LabelActor
from pipeline.output import LabelOutput
from pipeline.schema import error_row
from pipeline.shards import synthetic_sample, write_shards
from samcp.config import LabelerConfig
from samcp.data.coco import export_coco
from samcp.data.synthetic import SPLIT_SEEDS, SyntheticConfig, SyntheticCorpus
from samcp.model_files import describe_models


@pytest.fixture(scope="session")
def labeled(tmp_path_factory):
    """Labels of 4 held-out synthetic images in 2 real shards (written as the job writes them), an
    error row, and the images' ground truth as a COCO panoptic folder."""
    root = tmp_path_factory.mktemp("labeled")
    corpus = SyntheticCorpus(SyntheticConfig(seed=SPLIT_SEEDS["val"]))
    images = [corpus[i] for i in range(4)]
    export_coco(images, str(root / "truth"), corpus.categories)
    shards = write_shards((synthetic_sample(im) for im in images), str(root / "shards"), 2, progress=False)
    model = LabelerConfig(points_per_side=8)
    labeler = LabelActor(model, torch_threads=2).labeler
    output = LabelOutput(str(root / "labels"))
    manifest = {"labeling": describe_models(model), "package_version": "test", "created": ""}
    output.prepare(manifest, overwrite=False)
    for shard, part in zip(shards, (images[:2], images[2:])):
        rows = [LabelActor._output({"kind": "sample", "key": im.key, "shard": shard, "index": i,
                                    "image": im.image, "width": im.width, "height": im.height, "error": "",
                                    "shard_samples": -1, "shard_error": "", "skipped_members": ""}, result)
                for i, (im, result) in enumerate(zip(part, labeler.label_batch([im.image for im in part])))]
        transit = ("kind", "index", "shard_samples", "shard_error", "skipped_members")
        rows = [{k: v for k, v in r.items() if k not in transit} for r in rows]
        if shard == shards[-1]:
            rows.append(error_row("broken", shard, "corrupt image: cut"))
        output.write_shard(shard, rows, manifest)
    return root, images
