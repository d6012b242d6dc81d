"""Faces: dlib's face detector, landmarks and embedding network (the face task's built-in)."""
