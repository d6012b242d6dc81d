"""Classifiers: the Keras Applications ImageNet models, and users' classifier folders."""
