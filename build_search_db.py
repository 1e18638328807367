#!/usr/bin/env python3
"""Build the Faiss search index of a vectors file (the original demo's script).

Same as ``similar-images build``; see ``--help``. Example:

    python build_search_db.py -i ms_coco_file_list.txt.saved_predictions.npy -o ms_coco_file_list.faiss.index
"""

from similar_images.cli import run_script
from similar_images.cli.build import build

if __name__ == "__main__":
    run_script(build, prog_name="build_search_db.py")
