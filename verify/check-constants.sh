#!/usr/bin/env bash
# Checks that the Spin models in verify/ still mirror the C code (verify/sync.txt lists what):
# constants (#define / enum values), the C functions each model names, the broken-twin flags
# shared with the C twins, and a few source patterns the models rely on (seq_cst orders, the
# done_cv broadcast, ...). A C file that does not exist, a symbol that cannot be found, or a
# value that differs is a failure: the script never passes silently.
# Usage: bash verify/check-constants.sh [-q]      (-q: print only problems and the summary)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUIET=0
[ "${1:-}" = "-q" ] && QUIET=1

# Value of a #define or enum constant in a C header/source (or a model): prints the decimal
# value, "?" when the expression is not a plain integer / shift / earlier enumerator, or
# NOTFOUND. Comments are stripped first. POSIX awk (mawk is fine).
value_of() { # file symbol
  awk -v sym="$2" '
  function num(tok,   t, v, i, c) {
    t = tok; gsub(/[() \t]/, "", t); sub(/[uUlL]+$/, "", t)
    if (t ~ /^0[xX][0-9a-fA-F]+$/) {
      v = 0
      for (i = 3; i <= length(t); i++) { c = tolower(substr(t, i, 1)); v = v * 16 + index("0123456789abcdef", c) - 1 }
      return v
    }
    if (t ~ /^[0-9]+$/) return t + 0
    if (t in enumval) return enumval[t]
    if (t in defval) return defval[t]
    return "?"
  }
  function evalx(e,   parts, a, b) {
    gsub(/^[ \t(]+|[ \t)]+$/, "", e)
    if (index(e, "<<") > 0) {
      split(e, parts, "<<"); a = evalx(parts[1]); b = evalx(parts[2])
      if (a == "?" || b == "?") return "?"
      return a * (2 ^ b)
    }
    return num(e)
  }
  {
    line = $0; out = ""
    while (length(line) > 0) {
      if (incomment) {
        p = index(line, "*/"); if (p == 0) { line = ""; break }
        line = substr(line, p + 2); incomment = 0; continue
      }
      p1 = index(line, "/*"); p2 = index(line, "//")
      if (p2 > 0 && (p1 == 0 || p2 < p1)) { out = out substr(line, 1, p2 - 1); line = ""; break }
      if (p1 > 0) { out = out substr(line, 1, p1 - 1); line = substr(line, p1 + 2); incomment = 1; continue }
      out = out line; line = ""
    }
    if (out ~ /^[ \t]*#[ \t]*define[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]+/) {
      sub(/^[ \t]*#[ \t]*define[ \t]+/, "", out)
      name = out; sub(/[ \t].*$/, "", name)
      rest = out; sub(/^[A-Za-z_][A-Za-z0-9_]*[ \t]+/, "", rest)
      if (!(name in defval)) defval[name] = evalx(rest)
    } else if (out !~ /^[ \t]*#/) {
      text = text " " out
    }
  }
  END {
    while (match(text, /(^|[^A-Za-z0-9_])enum[ \t{]/) > 0) {
      text = substr(text, RSTART + RLENGTH - 1)
      b = index(text, "{"); e = index(text, "}"); s = index(text, ";")
      if (b == 0 || e == 0 || e < b) break
      if (s > 0 && s < b) { text = substr(text, s + 1); continue }   # a use, not a definition
      body = substr(text, b + 1, e - b - 1); text = substr(text, e + 1)
      n = split(body, items, ","); next_v = 0
      for (i = 1; i <= n; i++) {
        it = items[i]; gsub(/^[ \t]+|[ \t]+$/, "", it)
        if (it == "") continue
        q = index(it, "=")
        if (q > 0) { nm = substr(it, 1, q - 1); v = evalx(substr(it, q + 1)) } else { nm = it; v = next_v }
        gsub(/[ \t]/, "", nm)
        enumval[nm] = v
        if (v != "?") next_v = v + 1
      }
    }
    if (sym in defval) print defval[sym]
    else if (sym in enumval) print enumval[sym]
    else print "NOTFOUND"
  }' "$1"
}

ok=0; bad=0
report() { # status model name detail
  if [ "$1" = OK ]; then ok=$((ok + 1)); [ $QUIET = 1 ] && return; else bad=$((bad + 1)); fi
  printf '%-9s %-11s %-37s %s\n' "$1" "$2" "$3" "$4"
}

while read -r kind model mname cfile rest; do
  case "$kind" in ''|'#'*) continue ;; esac
  mfile="$HERE/$model"
  if [ ! -f "$mfile" ]; then report MISSING "$model" "$mname" "model file verify/$model not found"; continue; fi
  if [ ! -f "$ROOT/$cfile" ]; then report MISSING "$model" "${rest}" "C file $cfile not found"; continue; fi
  case "$kind" in
  const)
    mv=$(value_of "$mfile" "$mname"); cv=$(value_of "$ROOT/$cfile" "$rest")
    if [ "$cv" = NOTFOUND ]; then report MISSING "$model" "$mname" "$rest not defined in $cfile"
    elif [ "$mv" = NOTFOUND ]; then report MISSING "$model" "$mname" "no #define $mname in verify/$model"
    elif [ "$mv" = "?" ] || [ "$cv" = "?" ]; then report UNPARSED "$model" "$mname" "model '$mv', C '$cv' ($cfile)"
    elif [ "$mv" != "$cv" ]; then report MISMATCH "$model" "$mname" "model $mv, C $cv ($cfile: $rest)"
    else report OK "$model" "$mname" "= $cv ($cfile)"; fi ;;
  func)
    if ! grep -Eq "(^|[^A-Za-z0-9_])${rest}[[:space:]]*\(" "$ROOT/$cfile"; then
      report MISSING "$model" "$rest" "function not found in $cfile"
    elif ! grep -Eq "(^|[^A-Za-z0-9_])${rest}([^A-Za-z0-9_]|$)" "$mfile"; then
      report MISSING "$model" "$rest" "C function not named in verify/$model"
    else report OK "$model" "$rest" "in $cfile and the model"; fi ;;
  flag)
    pat="(#[[:space:]]*if(n)?def[[:space:]]+|defined[[:space:]]*\\(?[[:space:]]*)${rest}([^A-Za-z0-9_]|$)"
    if ! grep -Eq "$pat" "$ROOT/$cfile"; then report MISSING "$model" "$rest" "twin flag not tested in $cfile"
    elif ! grep -Eq "$pat" "$mfile"; then report MISSING "$model" "$rest" "twin flag not tested in verify/$model"
    else report OK "$model" "$rest" "twin in $cfile and the model"; fi ;;
  grep)
    if grep -Eq -- "$rest" "$ROOT/$cfile"; then report OK "$model" "pattern" "$cfile: $rest"
    else report CHANGED "$model" "pattern" "$cfile no longer matches: $rest"; fi ;;
  *) report BADLINE "$model" "$kind" "unknown kind in verify/sync.txt" ;;
  esac
done < "$HERE/sync.txt"

if [ $bad -eq 0 ]; then
  echo "check-constants: $ok checks OK (models and C agree)"
  exit 0
fi
echo "check-constants: $bad of $((ok + bad)) checks FAILED: update the model(s) or verify/sync.txt together with the C code"
exit 1
