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


def plain_params(image_processor: Any, fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The named attributes of an HF image processor as JSON-ready values."""
    if image_processor is None:
        raise ModelLoadError(
            "the checkpoint has no image processor (preprocessor_config.json)",
            fix="save the model's processor beside its weights",
        )
    if type(image_processor).__name__.endswith("Fast"):
        raise ModelLoadError(f"{type(image_processor).__name__} is a torchvision processor; load the slow one")
    params = {name: _plain(getattr(image_processor, name, None)) for name in fields}
    if "do_convert_rgb" in params:
        params["do_convert_rgb"] = params["do_convert_rgb"] is not False
    return params


def clip_preprocessing(image_processor: Any) -> dict[str, Any]:
    """CLIPImageProcessor (and look-alikes): resize, center-crop, rescale, normalize."""
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
    return {"kind": "clip", **plain_params(image_processor, fields)}
