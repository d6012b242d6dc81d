"""The built-in models: one row each, the one place a built-in model's name is written.

A row says the model's task, the family that builds it (`module:Class`, constructed as
`Class(builtin, models_dir, download, options)`), its official weight file (downloaded and
verified into MODELS_DIR) or the package that installs its files, and what the family builds
(`architecture`: the family's own fields). The task table (registry.TASKS: each task's built-in
names, its default first) and the weights catalogue of downloads (`CATALOG`, models.download)
are derived from these rows: adding a Keras Applications network is one row here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from contract import CLASSIFICATION, DETECTION, FACE
from models.weights import PackagedFiles, WeightFile

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGEAI_BASE = "https://github.com/OlafenwaMoses/ImageAI/releases/download/3.0.0-pretrained/"
KERAS = "classifiers.keras_applications:KerasApplicationClassifier"
IMAGEAI = "detectors.imageai_detectors:ImageAIDetector"


@dataclasses.dataclass(frozen=True)
class Builtin:
    name: str
    task: str
    family: str                         # "module:Class" that builds it
    weights: WeightFile | PackagedFiles
    architecture: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)


def _keras(name: str, module: str, constructor: str, side: int, preprocess: str, stored: str, **check) -> Builtin:
    """A keras.applications network: `constructor` from `module`, whose preprocess_input is
    Keras' mode `preprocess` (tf, caffe or torch), a square input of `side` pixels, ImageNet
    weights stored at `stored` in Keras' storage."""
    weights = WeightFile(name, "classify", stored.rsplit("/", 1)[-1], KERAS_BASE + stored, **check)
    return Builtin(name, CLASSIFICATION, KERAS, weights,
                   {"module": module, "constructor": constructor, "side": side, "preprocess": preprocess})


def _imageai(name: str, model_type: str, filename: str, **check) -> Builtin:
    """An ImageAI detector (ObjectDetection.setModelTypeAs<model_type>), COCO weights from
    ImageAI's release."""
    return Builtin(name, DETECTION, IMAGEAI, WeightFile(name, "detect", filename, IMAGEAI_BASE + filename, **check),
                   {"model_type": model_type})


# Per task, the first row is its default model.
BUILTINS: dict[str, Builtin] = {row.name: row for row in (
    # Keras' source has no hash for this file: its size is checked.
    _keras("mobilenet", "mobilenet_v2", "MobileNetV2", 224, "tf",
           "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", size=14_536_120),
    _keras("resnet", "resnet50", "ResNet50", 224, "caffe", "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
           md5="2cb95161c43110f7111970584f804107"),
    _keras("inception", "inception_v3", "InceptionV3", 299, "tf", "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
           md5="9a0d58056eeedaa3f26cb7ebd46da564"),
    _keras("densenet", "densenet", "DenseNet121", 224, "torch", "densenet/densenet121_weights_tf_dim_ordering_tf_kernels.h5",
           md5="9d60b8095a5708f2dcce2bca79d332c7"),
    # ImageAI publishes no checksum or size for its YOLO files: they are verified by
    # Content-Length and by loading them into the architecture before they are kept.
    _imageai("yolo", "YOLOv3", "yolov3.pt"),
    _imageai("tiny_yolo", "TinyYOLOv3", "tiny-yolov3.pt"),
    _imageai("retina", "RetinaNet", "retinanet_resnet50_fpn_coco-eeacb38b.pth", sha256_prefix="eeacb38b"),
    # dlib's HOG face detector (compiled into dlib), its 5-point landmarks and its 128-d ResNet
    # embedding (99.38 % on LFW at distance 0.6, dlib's published figure), as the
    # face_recognition library calls them; the files come with face-recognition-models (CC0).
    Builtin("dlib", FACE, "faces.dlib_faces:DlibFaceModel",
            PackagedFiles("dlib", "face_recognition_models", "models",
                          ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"),
                          "face-recognition-models==0.3.0"),
            {"runtime": "dlib", "detector": "HOG (frontal_face_detector)", "upsample": 1,
             "embedding_size": 128, "same_person_distance": 0.6}),
)}

# Every built-in's downloaded weight file, by model name (packaged files are installed by pip).
CATALOG: dict[str, WeightFile] = {name: row.weights for name, row in BUILTINS.items()
                                  if isinstance(row.weights, WeightFile)}


def builtins_of(task: str) -> tuple[str, ...]:
    """The task's built-in names in table order (its default first)."""
    return tuple(name for name, row in BUILTINS.items() if row.task == task)
