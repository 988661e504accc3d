"""One test per OD API breakage on current TensorFlow (docs/od-api.md), proving each fix of maskdetect/compat.py stays
fixed."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maskdetect  # noqa: F401
from maskdetect import compat
from maskdetect.errors import ConfigError


def test_import_order_without_touching_site_packages():
    """`import maskdetect` then `import object_detection.model_lib_v2` works in a fresh interpreter,
    with Keras 2 (tf-keras) as tf.keras (breakage 1), and the installed sources stay as shipped."""
    code = ("import maskdetect, object_detection.model_lib_v2, tensorflow as tf;"
            "print(tf.__version__, tf.keras.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    version, keras = out.stdout.split()
    assert version.startswith(("2.20", "2.21")) and keras.startswith("tf_keras"), out.stdout  # Colab: 2.20
    for module, patches in compat.SOURCE_PATCHES.items():
        source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8").replace("\r\n", "\n")
        for old, _ in patches:
            assert old in source, f"{module} was modified on disk"


def test_protobuf_modules_rebuilt_from_descriptors():
    """Breakage 2: the old generated *_pb2 modules load on protobuf >= 4 and round-trip a config."""
    import google.protobuf
    from google.protobuf import text_format
    from object_detection.protos import pipeline_pb2

    assert int(google.protobuf.__version__.split(".")[0]) >= 4
    config = pipeline_pb2.TrainEvalPipelineConfig()
    config.model.ssd.num_classes = 3
    config.model.ssd.feature_extractor.bifpn.max_level = 7
    config.train_config.fine_tune_checkpoint_type = "detection"
    again = text_format.Parse(text_format.MessageToString(config), pipeline_pb2.TrainEvalPipelineConfig())
    assert again == config and again.model.ssd.feature_extractor.bifpn.max_level == 7


def test_estimator_mode_keys():
    """Breakage 3: only tf.estimator.ModeKeys is used on the TF2 paths."""
    from object_detection import inputs  # imports `estimator` from tensorflow.compat.v1
    from tensorflow.compat.v1 import estimator

    assert (estimator.ModeKeys.TRAIN, estimator.ModeKeys.EVAL, estimator.ModeKeys.PREDICT) == ("train", "eval", "infer")
    assert inputs.tf_estimator is estimator
    with pytest.raises(AttributeError, match="TF2 paths"):
        estimator.Estimator  # noqa: B018


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_tf_slim_decoder_control_flow(fmt):
    """Breakage 4: tf_slim's TFExample image decoder (control_flow_ops.case/cond) decodes JPEG and PNG."""
    import tensorflow as tf
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt.upper())
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[fmt.encode()])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    decoded = TfExampleDecoder().decode(tf.constant(example))
    assert decoded["image"].shape == (20, 30, 3)
    if fmt == "png":
        np.testing.assert_array_equal(decoded["image"].numpy(), image)


def test_tensorflow_io_optional():
    """Breakage 5: DeepMAC imports without tensorflow_io installed."""
    from object_detection.meta_architectures import deepmac_meta_arch

    if importlib.util.find_spec("tensorflow_io") is None:
        assert deepmac_meta_arch.tfio is None


def test_pillow_text_size_in_visualization():
    """Breakage 6: drawing labelled boxes (eval image summaries) works on Pillow >= 10."""
    import PIL
    from object_detection.utils import visualization_utils

    assert int(PIL.__version__.split(".")[0]) >= 10
    image = np.zeros((60, 80, 3), np.uint8)
    visualization_utils.draw_bounding_box_on_image_array(image, 0.2, 0.2, 0.8, 0.8, color="red",
                                                         display_str_list=["with_mask: 90%"])
    assert image.any()


def test_numpy2_aliases_in_metrics():
    """Breakage 7: the PASCAL metric code we use (per-class AP@0.5) runs on NumPy 2."""
    from object_detection.utils import metrics

    assert not hasattr(np, "float") or np.__version__.startswith("1.")
    scores = np.array([0.9, 0.8, 0.3], float)
    labels = np.array([True, False, True])
    precision, recall = metrics.compute_precision_recall(scores, labels, num_gt=2)
    assert metrics.compute_average_precision(precision, recall) == pytest.approx(0.8333, abs=1e-3)


def test_bifpn_input_size_checked(sample_data, tmp_path):
    """Breakage 8: an input size the BiFPN cannot take is refused up front with the sizes that work."""
    from maskdetect.train.pipeline import configure

    with pytest.raises(ConfigError, match=r"input size 320 does not suit the BiFPN.*divisible by 2\*\*max_level = 128.*\[256, 384"):
        configure(sample_data, tmp_path / "run", image_size=320)
    configure(sample_data, tmp_path / "run", image_size=256)  # fine


def test_tflite_export_gets_fixed_shape_resizer(sample_data, tmp_path):
    """Breakage 9: the TFLite export pipeline has a fixed-shape resizer of the model's size."""
    from maskdetect.train.export import tflite_pipeline
    from maskdetect.train.pipeline import configure
    from maskdetect.train.run import load_pipeline

    paths = configure(sample_data, tmp_path / "run", image_size=384)
    pipeline, letterbox = tflite_pipeline(load_pipeline(paths.pipeline_config))
    resizer = pipeline.model.ssd.image_resizer
    assert letterbox and resizer.WhichOneof("image_resizer_oneof") == "fixed_shape_resizer"
    assert (resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width) == (384, 384)
    # the run's own config is untouched
    assert load_pipeline(paths.pipeline_config).model.ssd.image_resizer.HasField("keep_aspect_ratio_resizer")
    # the post-processing op's score floor is raised, never lowered below the run's own threshold
    nms = lambda p: p.model.ssd.post_processing.batch_non_max_suppression  # noqa: E731
    assert nms(tflite_pipeline(load_pipeline(paths.pipeline_config), 0.05)[0]).score_threshold == pytest.approx(0.05)
    assert nms(tflite_pipeline(load_pipeline(paths.pipeline_config), 0.0)[0]).score_threshold == pytest.approx(1e-8)
