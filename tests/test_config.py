"""Settings: read once, cast, and every problem reported together."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import ConfigError, Settings
from tests.support.paths import ROOT


def test_defaults():
    s = Settings.from_env({})
    assert (s.classification_enabled, s.classification_models) == (False, ("mobilenet",))
    assert (s.detection_enabled, s.detection_models) == (False, ("yolo",))
    assert s.models_dir == Path("./models") and s.model_download is True and s.preload_models is False
    assert (s.inference_concurrency, s.port, s.max_upload_mb, s.max_image_pixels) == (4, 5001, 10, 40_000_000)


@pytest.mark.parametrize("raw,expected", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True), ("on", True),
    ("false", False), ("0", False), ("NO", False), ("off", False), ("", False),
])
def test_booleans(raw, expected):
    assert Settings.from_env({"OBJECT_DETECTION_ENABLED": raw}).detection_enabled is expected


def test_legacy_alias_for_classification():
    assert Settings.from_env({"IMAGE_CLASSIFICATION": "true"}).classification_enabled is True
    # The documented name wins when both are set.
    env = {"IMAGE_CLASSIFICATION": "true", "IMAGE_CLASSIFICATION_ENABLED": "false"}
    assert Settings.from_env(env).classification_enabled is False


def test_former_names_and_spellings_still_work_with_one_notice_each():
    """MAX_BATCH (images per /v2 request, beside MAX_BATCH_SIZE: two batches), WAITRESS_THREADS
    (inference places, not waitress' thread count) and INFERENCE_RUNTIME=tensorflow (which also
    meant torch for the detectors) were renamed; old deployments keep working and are told."""
    s = Settings.from_env({"MAX_BATCH": "7", "WAITRESS_THREADS": "3", "INFERENCE_RUNTIME": "tensorflow"})
    assert (s.max_request_images, s.inference_concurrency, s.inference_runtime) == (7, 3, "framework")
    assert s.max_queue == 6 and len(s.notices) == 3
    assert all(old in " ".join(s.notices) for old in ("MAX_BATCH", "WAITRESS_THREADS", "tensorflow"))
    renamed = Settings.from_env({"MAX_IMAGES_PER_REQUEST": "5", "MAX_BATCH": "9", "INFERENCE_CONCURRENCY": "2"})
    assert (renamed.max_request_images, renamed.inference_concurrency, renamed.notices) == (5, 2, ())
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"WAITRESS_THREADS": "four"})
    assert "WAITRESS_THREADS='four' is not a whole number" in str(info.value)


def test_model_names_are_case_insensitive():
    s = Settings.from_env({"IMAGE_CLASSIFICATION_MODEL": "DenseNet", "OBJECT_DETECTION_MODEL": " tiny_yolo "})
    assert (s.classification_models, s.detection_models) == (("densenet",), ("tiny_yolo",))


def test_every_problem_is_reported_at_once():
    env = {"IMAGE_CLASSIFICATION_MODEL": "vgg16", "OBJECT_DETECTION_MODEL": "ssd",
           "OBJECT_DETECTION_ENABLED": "perhaps", "PORT": "http", "INFERENCE_CONCURRENCY": "0",
           "MAX_UPLOAD_MB": "1.5", "MAX_IMAGE_PIXELS": "-3"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert len(info.value.problems) == 7
    assert "valid choices: mobilenet, resnet, inception, densenet, or the name of a folder" in message
    assert "valid choices: yolo, tiny_yolo, retina" in message
    for name in env:
        assert name in message


def test_api_keys_are_printable_ascii():
    keys = Settings.from_env({"API_KEYS": " key-one , K3y_!#$%&'()*+./:;<=>?@[]^`{|}~ "}).api_keys
    assert keys == ("key-one", "K3y_!#$%&'()*+./:;<=>?@[]^`{|}~")


@pytest.mark.parametrize("raw", ["good,clé-secrète", "good,two words", "tab\there", "nul\x00key", "zero\u200bwidth",
                                 "ok,ｆｕｌｌ", "del\x7fkey"])
def test_api_keys_outside_printable_ascii_stop_the_start_without_being_shown(raw):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"API_KEYS": raw})
    (problem,) = info.value.problems
    assert problem.startswith("API_KEYS: key ") and "printable ASCII" in problem and "not shown" in problem
    for secret in ("clé", "secr", "words", "here", "key", "width", "ｆｕｌｌ"):
        assert secret not in problem.split("API_KEYS: key", 1)[1]


def test_settings_are_frozen():
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1


def test_model_lists_keep_their_order_and_accept_model_folders(tmp_path):
    (tmp_path / "my_model").mkdir()
    (tmp_path / "my_model" / "model.json").write_text("{}")
    s = Settings.from_env({"IMAGE_CLASSIFICATION_MODEL": "resnet, my_model,mobilenet",
                           "OBJECT_DETECTION_MODEL": "tiny_yolo,yolo", "MODELS_DIR": str(tmp_path)})
    assert s.classification_models == ("resnet", "my_model", "mobilenet")
    assert s.default_model("classification") == "resnet" and s.default_model("detection") == "tiny_yolo"


def test_unknown_names_and_duplicates_in_lists(tmp_path):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IMAGE_CLASSIFICATION_MODEL": "mobilenet,nothere,../etc",
                           "OBJECT_DETECTION_MODEL": "yolo,yolo", "MODELS_DIR": str(tmp_path)})
    message = str(info.value)
    assert "'nothere' is not a known model" in message and "'../etc' is not a known model" in message
    assert "names a model twice" in message


def documented_variables() -> set[str]:
    """The variables docs/configuration.md's tables list: each row's name(s) in its first cell,
    without a former name or an alias in parentheses."""
    names, in_table = set(), False
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| variable | values | default |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and line.startswith("| `"):
            first = re.sub(r"\([^)]*\)", "", line.split("|")[1])
            names |= set(re.findall(r"`([A-Z0-9_]+)`", first))
    return names


def test_the_configuration_page_lists_every_variable_and_only_those():
    from config import VARIABLES
    assert documented_variables() == set(VARIABLES)


def test_every_variable_is_read_and_documented(tmp_path):
    """Each listed variable really changes the settings (or is refused with its name), and
    docs/configuration.md documents it."""
    import dataclasses

    from config import VARIABLES
    documented = documented_variables()
    defaults = Settings()
    fields = {f.metadata["variable"]: f.name for f in dataclasses.fields(Settings) if f.metadata}
    assert set(fields) == set(VARIABLES) and len(VARIABLES) >= 27
    accepted = {"MODELS_DIR": str(tmp_path), "FETCH_ALLOW_HOSTS": "images.internal", "API_KEYS": "k1",
                "REDIS_PASSWORD": "any text", "CACHE_PREFIX": "team-a", "DATA_DIR": str(tmp_path / "data")}
    for name in VARIABLES:
        assert name in documented, f"{name} is not documented in docs/configuration.md"
        if name in accepted:
            settings = Settings.from_env({name: accepted[name]})
            assert getattr(settings, fields[name]) != getattr(defaults, fields[name]), name
            continue
        with pytest.raises(ConfigError) as info:
            Settings.from_env({name: "not-a-value"})
        assert info.value.problems[0].startswith(name), info.value.problems
