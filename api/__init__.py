"""The HTTP layer. SERVICE_NAME and VERSION are this service's name and release, written here
once: the OpenAPI document's `info` and CodeProject.AI's status routes (api/codeproject.py)
answer them, so no route can claim another version."""

SERVICE_NAME = "image-classification-service"
VERSION = "1.0.0"
