#!/usr/bin/env bash
# Download precomputed feature vectors for the COCO val2014 images and put them in place.
#
# Usage: ./get_ms_coco_vectors.sh [URL] [--sha256 HEX] [--dir DIR] [--model NAME] [--force]
#
#   URL            the .npy vectors (one row per line of ms_coco_file_list.txt, in order);
#                  default: $COCO_VECTORS_URL
#   --sha256 HEX   expected sha256 of the download; default: $COCO_VECTORS_SHA256, else
#                  the first word of URL.sha256
#   --dir DIR      folder holding ms_coco_file_list.txt (default: current folder)
#   --model NAME   vgg16 or efficientnet-lite0 (default: URL.manifest.json if the server
#                  has one, else guessed from the dimension: 4096 vgg16, 1280 efficientnet-lite0)
#   --force        replace vectors already in place
#
# The download resumes when re-run, is checked (sha256, then one row per listed image
# and the model's dimension) and only then written, with its manifest, to
# DIR/ms_coco_file_list.txt.saved_predictions.npy. Without a URL it explains how to
# compute the vectors instead and exits with status 1.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
URL="${COCO_VECTORS_URL:-}"
SHA256="${COCO_VECTORS_SHA256:-}"
ROOT="."
MODEL=""
FORCE=0

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { sed -n '2,21s/^# \{0,1\}//p' "$0"; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --sha256) [ $# -ge 2 ] || bad_usage "--sha256 needs a value"; SHA256="$2"; shift 2 ;;
            --dir) [ $# -ge 2 ] || bad_usage "--dir needs a folder"; ROOT="$2"; shift 2 ;;
            --model) [ $# -ge 2 ] || bad_usage "--model needs a name"; MODEL="$2"; shift 2 ;;
            --force) FORCE=1; shift ;;
            -h|--help) usage; exit 0 ;;
            -*) bad_usage "unknown option: $1" ;;
            *) URL="$1"; shift ;;
        esac
    done
}

bad_usage() { say "error: $1 (see --help)"; exit 2; }

explain_compute() {
    cat >&2 <<'EOF'
No URL for precomputed vectors (pass one, or set COCO_VECTORS_URL).

Compute them instead, from the images that ./get_ms_coco_dataset.sh downloaded:

  # EfficientNet-Lite0 (1280-d, pretrained weights ship with the package, works offline):
  similar-images extract --model efficientnet-lite0 -l ms_coco_file_list.txt -d ms_coco/val2014
  # about 25 minutes for the 40,504 images on a 2-core CPU (~26 images/s; add
  # --runtime openvino for about 3 minutes)

  # VGG16 fc2 (4096-d, the original model; downloads its ImageNet weights once):
  similar-images extract --model vgg16 -l ms_coco_file_list.txt -d ms_coco/val2014
  # about 95 minutes on a 2-core CPU (~7 images/s); --runtime openvino --precision int8
  # takes about 25 (see the README's speed section)

An interrupted extraction continues with --resume. Then build the index
(-d: 1280 for EfficientNet-Lite0, 4096 for VGG16):
  similar-images build -d 1280
EOF
}

pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"
    elif [ -x "$SCRIPT_DIR/.venv/bin/python" ]; then echo "$SCRIPT_DIR/.venv/bin/python"
    else echo python3
    fi
}

sha256_of() {
    if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# expected_sha256: from --sha256 / COCO_VECTORS_SHA256, else URL.sha256.
expected_sha256() {
    local published
    if [ -z "$SHA256" ]; then
        published="$(curl --fail --silent --location "$URL.sha256" 2>/dev/null || true)"
        SHA256="$(printf '%s' "$published" | awk 'NR==1 {print $1}')"
    fi
    SHA256="$(printf '%s' "$SHA256" | tr 'A-F' 'a-f')"
    [[ "$SHA256" =~ ^[0-9a-f]{64}$ ]] \
        || die "no valid sha256 for $URL: pass --sha256 HEX or set COCO_VECTORS_SHA256 (or publish $URL.sha256)"
}

# download PART: resume into PART unless it already has the expected checksum.
download() {
    local part="$1" rc=0
    if [ -f "$part" ] && [ "$(sha256_of "$part")" = "$SHA256" ]; then
        say "$(basename "$part"): already downloaded"
        return 0
    fi
    [ -s "$part" ] && say "resuming at byte $(wc -c < "$part" | tr -d ' ')" || say "downloading $URL"
    curl --fail --location --retry 3 --continue-at - --output "$part" \
         $( [ -t 2 ] && echo --progress-bar || echo --silent --show-error ) "$URL" || rc=$?
    [ "$rc" -eq 0 ] || die "download of $URL stopped (curl exit $rc); re-run this script to resume"
    if [ "$(sha256_of "$part")" != "$SHA256" ]; then
        rm -f "$part"
        die "sha256 of the download does not match $SHA256: removed it; check the URL and checksum, then re-run"
    fi
}

main() {
    parse_args "$@"
    [ -n "$URL" ] || { explain_compute; exit 1; }
    command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
    local list="$ROOT/ms_coco_file_list.txt" output="$ROOT/ms_coco_file_list.txt.saved_predictions.npy"
    local part="$ROOT/.ms_coco_vectors.download.part" extra=() python image_dir
    python="$(pick_python)"
    image_dir="$ROOT/ms_coco/val2014"
    [ "$ROOT" != "." ] || image_dir="ms_coco/val2014"  # as the README's extract command records it
    [ -f "$list" ] || die "$list not found; run ./get_ms_coco_dataset.sh first"
    if [ "$FORCE" -eq 0 ] && "$python" -m similar_images.datasets.coco_vectors --check-installed \
            --file-list "$list" --output "$output" 2>/dev/null; then
        say "vectors already in place: $output"
        exit 0
    fi
    expected_sha256
    download "$part"
    if curl --fail --silent --location --output "$part.manifest.json" "$URL.manifest.json" 2>/dev/null; then
        extra+=(--source-manifest "$part.manifest.json")
    else
        rm -f "$part.manifest.json"
    fi
    [ -z "$MODEL" ] || extra+=(--model "$MODEL")
    [ "$FORCE" -eq 0 ] || extra+=(--force)
    "$python" -m similar_images.datasets.coco_vectors "$part" --file-list "$list" \
        --image-dir "$image_dir" --output "$output" --url "$URL" --sha256 "$SHA256" \
        ${extra[@]+"${extra[@]}"} \
        || die "the downloaded vectors were not installed; the download is kept as $part (delete it to download again)"
    rm -f "$part" "$part.manifest.json"
    say "done. Next: similar-images build -d $("$python" -c 'import sys, numpy; print(numpy.load(sys.argv[1], mmap_mode="r").shape[1])' "$output")"
}

main "$@"
