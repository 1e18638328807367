"""The project's exception types.

Every failure a user can cause (a bad file, a bad URL, a database whose parts do not
belong together) raises a subclass of :class:`SimilarImagesError` whose message says
what was wrong and, where it helps, what to do.
"""


class SimilarImagesError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(SimilarImagesError):
    """An image could not be loaded.

    Attributes:
        reason: a short, stable code for the kind of failure, one of
            :data:`IMAGE_ERROR_REASONS`; the message gives the details.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


IMAGE_ERROR_REASONS = (
    "not found",
    "unreadable",  # exists, but cannot be opened (permissions, an I/O error)
    "not an image",
    "corrupt",  # truncated or otherwise undecodable
    "too large",
    "refused url",
    "http error",
    "timeout",
)


class ModelError(SimilarImagesError):
    """A feature model could not be built or loaded."""


class DatabaseError(SimilarImagesError):
    """Database files are missing, corrupt, or do not belong together."""
