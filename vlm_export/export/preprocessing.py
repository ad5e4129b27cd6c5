"""Read HF image processors into the plain parameters the runtime's preprocessors take."""

from __future__ import annotations

from typing import Any

from vlm_export.errors import ModelLoadError


def _plain(value: Any) -> Any:
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in dict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):  # enums such as PILImageResampling
        return value.value
    return value


def clip_preprocessing(image_processor: Any) -> dict[str, Any]:
    """CLIPImageProcessor (and look-alikes): resize, center-crop, rescale, normalize."""
    if image_processor is None:
        raise ModelLoadError(
            "the checkpoint has no image processor (preprocessor_config.json)",
            fix="save the model's processor beside its weights",
        )
    if type(image_processor).__name__.endswith("Fast"):
        raise ModelLoadError(f"{type(image_processor).__name__} is a torchvision processor; load the slow one")
    fields = [
        "do_convert_rgb",
        "do_resize",
        "size",
        "resample",
        "do_center_crop",
        "crop_size",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
    ]
    params = {name: _plain(getattr(image_processor, name, None)) for name in fields}
    params["do_convert_rgb"] = params["do_convert_rgb"] is not False
    return {"kind": "clip", **params}
