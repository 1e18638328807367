#!/usr/bin/env python3
"""Extract a VGG16 fc2 vector for every image of a file list (the original demo's script).

Same as ``similar-images extract``; see ``--help``. Example:

    python extract_image_vectors.py -l ms_coco_file_list.txt -d ms_coco/val2014
"""

from similar_images.cli import run_script
from similar_images.cli.extract import extract

if __name__ == "__main__":
    run_script(extract, prog_name="extract_image_vectors.py")
