"""similar-images: give it a photo, get the most similar images of a collection."""

__version__ = "0.1.0"
