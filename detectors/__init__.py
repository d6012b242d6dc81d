"""Detectors: ImageAI's COCO detectors, and users' YOLO-style detector folders."""
