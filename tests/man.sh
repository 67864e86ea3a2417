#!/bin/bash
# Every manual page is clean under mandoc -Tlint (warnings and worse), and
# every option efsession's --help lists is documented in efsession(8).
. "${top_srcdir:-.}/tests/lib.sh"

[ -n "${MANDOC:-}" ] || MANDOC=$(command -v mandoc || true)
[ -n "$MANDOC" ] || skip_all "mandoc is not installed (Debian package mandoc)"
for page in "$top_srcdir"/man/*.[1-8]; do
	out=$("$MANDOC" -Tlint -W warning "$page" 2>&1)
	check "$(basename "$page") is clean under mandoc -Tlint" [ -z "$out" ]
	[ -z "$out" ] || echo "$out" | sed 's/^/# /'
done
for opt in $("$EFSESSION" --help | grep -oE -- '--[a-z-]+' | sort -u); do
	check "efsession(8) documents $opt" grep -qF -- "Fl $(echo "${opt#-}" | sed 's/-/\\-/g')" "$top_srcdir/man/efsession.8"
done
done_testing
