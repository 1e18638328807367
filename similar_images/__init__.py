"""similar-images: give it a photo, get the most similar images of a collection."""

import os

# Faiss runs its loops on OpenMP threads and its matrix products on BLAS threads. With
# OpenMP's default wait policy an idle OpenMP thread spins, and on 2 cores the spinning
# takes the CPU from the BLAS threads doing the work: training IVF1282,PQ128x4fs on 50,000
# x 1280 vectors beside other jobs took 27 s for 5 k-means rounds and 13.8 s for the PQ
# with spinning, 15.5 s and 1.6 s without (benchmarks/README.md, "Search at millions").
# Set before Faiss or torch load their OpenMP runtime; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
