#!/usr/bin/env bash
# Generates a project from one of templates/ as `cargo generate` does, for machines without it:
#
#   ./scripts/generate-template.sh <template> <project-name> [<parent directory>]
#   ./scripts/generate-template.sh line-bot my-bot ~/src      # makes ~/src/my-bot
#
# With cargo-generate installed, the same project comes from
#   cargo generate --path templates/<template> --name <project-name>
#
# The templates use only cargo-generate's built-in placeholders, `{{project-name}}` and
# `{{crate_name}}` (the name with `-` as `_`); anything else in `{{ }}` or `{% %}` is refused, so
# the two ways never give different projects. cargo-generate.toml is not copied.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    echo "usage: $0 <template> <project-name> [<parent directory>]" >&2
    echo "templates: $(cd "$root/templates" && ls -d -- */ | tr -d / | tr '\n' ' ')" >&2
    exit 2
}
(($# >= 2 && $# <= 3)) || usage
template=$1
name=$2
parent=${3:-.}
source="$root/templates/$template"
[[ -f $source/cargo-generate.toml ]] || { echo "no template named '$template'" >&2; usage; }
# A crate name cargo accepts, as cargo-generate requires.
if [[ ! $name =~ ^[a-zA-Z][a-zA-Z0-9_-]*$ ]]; then
    echo "'$name' is not a crate name: a letter, then letters, digits, - or _" >&2
    exit 2
fi
crate_name=${name//-/_}
dest="$parent/$name"
if [[ -e $dest ]]; then
    echo "$dest already exists" >&2
    exit 1
fi

mkdir -p "$dest"
# Everything but cargo-generate's own file, hidden files (.gitignore, .env.example) included.
(cd "$source" && find . -type f ! -name cargo-generate.toml -print0) |
    while IFS= read -r -d '' file; do
        mkdir -p "$dest/$(dirname "$file")"
        sed -e "s/{{project-name}}/$name/g" -e "s/{{crate_name}}/$crate_name/g" \
            "$source/$file" >"$dest/$file"
        if grep -nE '\{\{|\{%' "$dest/$file" >&2; then
            echo "$template/$file: a placeholder this script does not know (above)" >&2
            rm -rf "$dest"
            exit 1
        fi
    done
echo "generated $dest from templates/$template"
