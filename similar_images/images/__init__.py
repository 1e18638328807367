"""Open and decode images: paths, http(s) URLs, raw bytes or PIL images to RGB arrays.

Pure preprocessing, no model: :func:`load_image` (``decode.py``) returns an RGB
``PIL.Image`` with its EXIF orientation applied, :func:`to_model_input` (``fit.py``) fits it
to a model's input; ``fetch.py`` downloads http(s) sources under one deadline (for the
CLI, the notebook and the service alike), ``addresses.py`` says which URLs and addresses
a fetch may reach.

Resize policy: a plain resize to the model input (``224 x 224`` for VGG16), aspect ratio
not kept, as Keras' ``load_img(target_size=...)`` did in the original demo, but with
Pillow's antialiased bilinear filter instead of nearest neighbour (see :data:`RESAMPLE`).
CLIP models instead keep the aspect ratio: open_clip's resize of the shorter side (bicubic)
and centre crop (:class:`Fit`).

Every failure raises :class:`~similar_images.errors.ImageError` with a one-line
message naming the source and saying why, and a stable ``reason`` code.
"""

from similar_images.images.decode import Source, load_image, to_rgb
from similar_images.images.fetch import DEFAULT_DEADLINE, DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, fetch_url
from similar_images.images.fit import RESAMPLE, Fit, Size, fit_of, load_for_model, prepare_batch, to_model_input

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "RESAMPLE", "Fit", "Size", "Source",
           "fetch_url", "fit_of", "load_for_model", "load_image", "prepare_batch", "to_model_input", "to_rgb"]
