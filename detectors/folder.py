"""A user's own YOLO-style detector from a model folder (Keras, TFLite, ONNX, or a remote inference engine)."""
from __future__ import annotations

from PIL import Image

from contract import Detection, Detector
from detectors.yolo_decode import decode, nms
from models.folder_model import FolderModel


class FolderDetector(FolderModel, Detector):
    def check_outputs(self, executor, where):
        classes = len(self.spec.labels)
        width = 4 + classes if self.spec.layout == "yolov8" else 5 + classes
        shape = executor.outputs[0].shape
        if len(shape) != 3 or width not in shape[1:]:
            layout = "[1, 4+C, N] or [1, N, 4+C]" if self.spec.layout == "yolov8" else "[1, N, 5+C]"
            return [f"{where}: 'labels' has {classes} lines, but the output shape {list(shape)} "
                    f"does not match layout '{self.spec.layout}' ({layout}) with C = {classes}"]
        return []

    def predict(self, images: list[Image.Image], min_score: float) -> list[list[Detection]]:
        return [self._detect(image, min_score) for image in images]

    def _detect(self, image: Image.Image, min_score: float) -> list[Detection]:
        batch, placements = self.inputs([image])
        output = self._executor.run(batch)[0][0]
        boxes, scores, class_ids = decode(output, self.spec.layout, len(self.spec.labels),
                                          self.spec.box_units, self.input_size, min_score)
        keep = nms(boxes, scores, class_ids, self.spec.iou_threshold)
        boxes = placements[0].to_image(boxes[keep])
        return [Detection(self.spec.labels[int(c)], float(s), tuple(int(round(v)) for v in box))
                for box, s, c in zip(boxes, scores[keep], class_ids[keep])]
