#!/usr/bin/env bash
# Download the COCO 2014 validation images (40,504 photos, 6.2 GB) and list them.
#
# Usage: ./get_ms_coco_dataset.sh [--dir DIR] [--annotations] [--keep-zip]
#
#   --dir DIR       where ms_coco/ and ms_coco_file_list.txt go (default: current folder)
#   --annotations   also fetch the 2014 annotations (241 MB) and extract
#                   ms_coco/annotations/instances_val2014.json (for `similar-images evaluate`)
#   --keep-zip      keep the downloaded archives after extracting them
#
# Result: DIR/ms_coco/val2014/*.jpg and DIR/ms_coco_file_list.txt (sorted, one name a
# line, relative to ms_coco/val2014). Re-run after an interruption: the download resumes
# where it stopped; with everything in place a re-run does nothing.
#
# Environment: COCO_BASE_URL (default http://images.cocodataset.org; archives are under
# zips/ and annotations/), COCO_VAL2014_SIZE and COCO_ANNOTATIONS_SIZE (expected archive
# sizes in bytes; empty to skip the size check).
set -euo pipefail

BASE_URL="${COCO_BASE_URL:-http://images.cocodataset.org}"
BASE_URL="${BASE_URL%/}"
VAL2014_SIZE="${COCO_VAL2014_SIZE-6645013297}"
ANNOTATIONS_SIZE="${COCO_ANNOTATIONS_SIZE-252872794}"
EXPECTED_IMAGES=40504

ROOT="."
WANT_ANNOTATIONS=0
KEEP_ZIP=0

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) [ $# -ge 2 ] || { say "error: --dir needs a folder"; exit 2; }; ROOT="$2"; shift 2 ;;
            --dir=*) ROOT="${1#--dir=}"; shift ;;
            --annotations) WANT_ANNOTATIONS=1; shift ;;
            --keep-zip) KEEP_ZIP=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) say "error: unknown option: $1 (see --help)"; exit 2 ;;
        esac
    done
}

file_size() { wc -c < "$1" | tr -d ' '; }

# download URL DEST EXPECTED_SIZE: fetch into DEST.part (resuming a previous partial
# download), check size and zip integrity, then rename to DEST.
download() {
    local url="$1" dest="$2" expected="$3" part="$2.part" have rc
    [ -f "$dest" ] && return 0
    have=0; [ -f "$part" ] && have="$(file_size "$part")"
    if [ -n "$expected" ] && [ "$have" -eq "$expected" ]; then
        say "$(basename "$part"): already fully downloaded"
    else
        [ "$have" -gt 0 ] && say "resuming $(basename "$dest") at byte $have" \
                          || say "downloading $url"
        rc=0
        curl --fail --location --retry 3 --continue-at - --output "$part" \
             $( [ -t 2 ] && echo --progress-bar || echo --silent --show-error ) "$url" || rc=$?
        if [ "$rc" -eq 33 ]; then
            say "the server cannot resume downloads; starting again from the first byte"
            rm -f "$part"
            rc=0
            curl --fail --location --retry 3 --output "$part" "$url" || rc=$?
        fi
        if [ "$rc" -ne 0 ]; then
            # 416: the server has nothing past our last byte, i.e. the file is complete
            [ "$rc" -eq 22 ] && [ -f "$part" ] && range_complete "$url" "$part" \
                || die "download of $url stopped (curl exit $rc); re-run this script to resume"
        fi
    fi
    verify_archive "$part" "$expected"
    mv -f "$part" "$dest"
}

# range_complete URL PART: true when the server's size equals PART's size.
range_complete() {
    local length
    length="$(curl --silent --head --location "$1" | tr -d '\r' \
              | awk 'tolower($1)=="content-length:" {n=$2} END {print n}')"
    [ -n "$length" ] && [ "$length" -eq "$(file_size "$2")" ]
}

# verify_archive FILE EXPECTED_SIZE: a wrong size or a failed zip test removes FILE.
verify_archive() {
    local file="$1" expected="$2" have
    have="$(file_size "$file")"
    if [ -n "$expected" ] && [ "$have" -lt "$expected" ]; then
        die "$(basename "$file") has $have of $expected bytes; re-run this script to resume"
    fi
    if [ -n "$expected" ] && [ "$have" -gt "$expected" ]; then
        rm -f "$file"
        die "$(basename "$file") has $have bytes, expected $expected: removed it; re-run to download again"
    fi
    say "verifying $(basename "$file") ..."
    if ! unzip -tqq "$file" >/dev/null 2>&1; then
        rm -f "$file"
        die "$(basename "$file") is not a valid zip archive (corrupt download): removed it; re-run to download again"
    fi
}

# extract_images ZIP IMAGES_DIR: unzip val2014/ beside IMAGES_DIR, then rename it in one step.
extract_images() {
    local zip="$1" images="$2" tmp
    tmp="$(dirname "$images")/.val2014.extracting"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    say "extracting $(basename "$zip") ..."
    unzip -q "$zip" 'val2014/*' -d "$tmp" || { rm -rf "$tmp"; die "could not extract $zip"; }
    [ -d "$tmp/val2014" ] || { rm -rf "$tmp"; die "$zip has no val2014/ folder"; }
    mv "$tmp/val2014" "$images"
    rm -rf "$tmp"
}

# write_file_list IMAGES_DIR LIST: sorted image names relative to IMAGES_DIR, atomically.
write_file_list() {
    local images="$1" list="$2" tmp count
    tmp="$list.tmp.$$"
    (cd "$images" && find . -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
        | sed 's|^\./||' | LC_ALL=C sort) > "$tmp"
    count="$(wc -l < "$tmp" | tr -d ' ')"
    [ "$count" -gt 0 ] || { rm -f "$tmp"; die "no images found in $images"; }
    mv -f "$tmp" "$list"
    say "listed $count images in $list"
    [ "$count" -eq "$EXPECTED_IMAGES" ] || say "note: COCO val2014 has $EXPECTED_IMAGES images, found $count"
}

get_images() {
    local images="$ROOT/ms_coco/val2014" list="$ROOT/ms_coco_file_list.txt"
    local zip="$ROOT/ms_coco/val2014.zip"
    if [ -d "$images" ] && [ -f "$list" ]; then
        say "images already in place: $images ($(wc -l < "$list" | tr -d ' ') listed in $list)"
        return 0
    fi
    if [ ! -d "$images" ]; then
        download "$BASE_URL/zips/val2014.zip" "$zip" "$VAL2014_SIZE"
        extract_images "$zip" "$images"
        [ "$KEEP_ZIP" -eq 1 ] || rm -f "$zip"
    fi
    write_file_list "$images" "$list"
}

get_annotations() {
    local dir="$ROOT/ms_coco/annotations" name="instances_val2014.json"
    local zip="$ROOT/ms_coco/annotations_trainval2014.zip" tmp
    if [ -f "$dir/$name" ]; then
        say "annotations already in place: $dir/$name"
        return 0
    fi
    download "$BASE_URL/annotations/annotations_trainval2014.zip" "$zip" "$ANNOTATIONS_SIZE"
    tmp="$ROOT/ms_coco/.annotations.extracting"
    rm -rf "$tmp"
    unzip -q -o "$zip" "annotations/$name" -d "$tmp" \
        || { rm -rf "$tmp"; die "$zip has no annotations/$name"; }
    mkdir -p "$dir"
    mv -f "$tmp/annotations/$name" "$dir/$name"
    rm -rf "$tmp"
    [ "$KEEP_ZIP" -eq 1 ] || rm -f "$zip"
    say "annotations in $dir/$name"
}

main() {
    parse_args "$@"
    command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
    command -v unzip >/dev/null || die "unzip is needed (apt-get install unzip)"
    mkdir -p "$ROOT/ms_coco"
    get_images
    [ "$WANT_ANNOTATIONS" -eq 0 ] || get_annotations
    say "done. Next: ./get_ms_coco_vectors.sh URL, or compute the vectors (see README, 'COCO')"
}

main "$@"
