"""``python -m similar_images.cli``: the ``similar-images`` command (benchmarks run it this way)."""

from similar_images.cli import main

main()
