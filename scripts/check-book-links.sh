#!/usr/bin/env bash
# Checks every relative link of the book (book/src): the file must exist and, with `#anchor`, the
# target page must have a heading whose mdBook id is that anchor. Links to http(s) and mailto are
# not followed (the book is built offline). Code blocks and inline code are skipped.
#
#   ./scripts/check-book-links.sh [book/src]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=${1:-book/src}

# The ids mdBook gives a page's headings: the heading's text without markup, lower-cased,
# whitespace as '-', anything but letters, digits, '_' and '-' dropped; repeats get -1, -2, ...
heading_ids() {
    awk '
        /^[[:space:]]*(```|~~~)/ { fenced = !fenced; next }
        fenced { next }
        /^#{1,6}[[:space:]]/ {
            text = $0
            sub(/^#+[[:space:]]+/, "", text)
            sub(/[[:space:]]+#+[[:space:]]*$/, "", text)
            while (match(text, /\[[^]]*\]\([^)]*\)/)) {
                inner = substr(text, RSTART + 1, RLENGTH - 1)
                sub(/\]\([^)]*\)$/, "", inner)
                text = substr(text, 1, RSTART - 1) inner substr(text, RSTART + RLENGTH)
            }
            id = ""
            n = length(text)
            for (i = 1; i <= n; i++) {
                c = substr(text, i, 1)
                if (c ~ /[A-Za-z0-9_-]/) id = id tolower(c)
                else if (c ~ /[[:space:]]/) id = id "-"
            }
            if (id in seen) { seen[id]++; id = id "-" seen[id] } else { seen[id] = 0 }
            print id
        }
    ' "$1"
}

# Every link target of a page, one per line as `line<TAB>target`, outside code.
link_targets() {
    awk '
        /^[[:space:]]*(```|~~~)/ { fenced = !fenced; next }
        fenced { next }
        {
            line = $0
            gsub(/`[^`]*`/, "", line)
            while (match(line, /\]\([^) ]+\)/)) {
                print NR "\t" substr(line, RSTART + 2, RLENGTH - 3)
                line = substr(line, RSTART + RLENGTH)
            }
        }
    ' "$1"
}

failures=0
links=0
while IFS= read -r page; do
    dir=$(dirname "$page")
    while IFS=$'\t' read -r line target; do
        case $target in
        http://* | https://* | mailto:*) continue ;;
        esac
        links=$((links + 1))
        path=${target%%#*}
        anchor=""
        [[ $target == *#* ]] && anchor=${target#*#}
        if [[ -z $path ]]; then
            file=$page
        else
            file="$dir/$path"
        fi
        if [[ ! -f $file ]]; then
            echo "book: $page:$line: $target: no file $file" >&2
            failures=$((failures + 1))
            continue
        fi
        if [[ -n $anchor && $file == *.md ]] && ! heading_ids "$file" | grep -qxF -- "$anchor"; then
            echo "book: $page:$line: $target: $file has no heading #$anchor" >&2
            failures=$((failures + 1))
        fi
    done < <(link_targets "$page")
done < <(find "$src" -name '*.md' | sort)

if ((failures > 0)); then
    echo "book: $failures of $links links do not resolve" >&2
    exit 1
fi
echo "book: all $links links resolve"
