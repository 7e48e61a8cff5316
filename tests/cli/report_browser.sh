#!/bin/sh
# report.html in headless Chromium (Debian package `chromium`): the synthetic report written by
# $BUILD/tests/test_report --write must load without any console message, keep every <svg> in the
# DOM, and lay out with no SVG text clipped by its figure or overlapping another text (measured by a
# probe script added to a copy of the page; the report itself has no scripts). A page that does log
# to the console must be caught, so the console check is known to work. Also takes a screenshot;
# set VMOER_REPORT_SHOT=FILE.png to keep it. VMOER_SKIP_BROWSER=1 skips (counts as 0 passed).
BUILD=${BUILD:-build}
GEN="$BUILD/tests/test_report"
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

if [ "${VMOER_SKIP_BROWSER:-0}" = 1 ]; then echo "skipped (VMOER_SKIP_BROWSER=1)"; echo "0 passed, 0 failed"; exit 0; fi
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    echo "FAIL: chromium not found (apt-get install -y chromium, or VMOER_SKIP_BROWSER=1)"
    echo "0 passed, 1 failed"; exit 1
fi

# chrome PROFILE ARGS...: one headless run with its own fresh profile; stderr to $tmp/err.
chrome() {
    prof="$tmp/profile.$1"; shift
    mkdir -p "$prof"
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$prof" --enable-logging=stderr --v=0 "$@" 2>"$tmp/err"
}
# Console messages of the page, one per line (Chromium logs them as ...:CONSOLE(line)] or :CONSOLE:line]).
console() { grep -E ':CONSOLE[(:]' "$tmp/err"; }

if "$GEN" --write "$tmp/report.html" >"$tmp/gen.log" 2>&1 && [ -s "$tmp/report.html" ]; then ok
else bad "generator $GEN failed: $(tail -3 "$tmp/gen.log")"; echo "$pass passed, $fail failed"; exit 1; fi
nfig=$(sed -n 's/^figures: //p' "$tmp/gen.log")

# 1. The console check catches a page that logs (otherwise a silent browser would pass anything).
printf '<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body><p>x</p><script>console.error("probe-error");</script></body></html>\n' >"$tmp/bad.html"
chrome bad --dump-dom "file://$tmp/bad.html" >/dev/null
if console | grep -q probe-error; then ok; else bad "console messages are not detected: $(tail -5 "$tmp/err")"; fi

# 2. The report: loads, no console message, all figures in the DOM.
chrome dom --dump-dom "file://$tmp/report.html" >"$tmp/dom.html"; rc=$?
if [ $rc -eq 0 ] && grep -q '</html>' "$tmp/dom.html"; then ok; else bad "chromium exit $rc: $(tail -5 "$tmp/err")"; fi
if [ -z "$(console)" ]; then ok; else bad "console messages: $(console | head -5)"; fi
nsvg=$(grep -o '<svg ' "$tmp/dom.html" | wc -l)
if [ -n "$nfig" ] && [ "$nsvg" -eq "$nfig" ]; then ok; else bad "$nsvg <svg> in the DOM, generator made '$nfig' figures"; fi

# 3. Layout probe on a copy: every SVG text inside its figure, no two texts of a figure overlapping.
cat >"$tmp/probe.js" <<'EOF'
<script>
(function () {
  var problems = [], n = 0;
  document.querySelectorAll('svg').forEach(function (svg, si) {
    var box = svg.getBoundingClientRect();
    var title = svg.querySelector('title') ? svg.querySelector('title').textContent : '';
    var ts = Array.prototype.map.call(svg.querySelectorAll('text'), function (t) {
      return { s: t.textContent, r: t.getBoundingClientRect() };
    });
    ts.forEach(function (a, i) {
      n++;
      var r = a.r;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        problems.push('[' + title + '] clipped: ' + a.s);
      for (var j = i + 1; j < ts.length; j++) {
        var q = ts[j].r;
        var w = Math.min(r.right, q.right) - Math.max(r.left, q.left);
        var h = Math.min(r.bottom, q.bottom) - Math.max(r.top, q.top);
        if (w > 1 && h > 1) problems.push('[' + title + '] overlap: ' + a.s + ' / ' + ts[j].s);
      }
    });
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = 'PROBE texts=' + n + ' problems=' + problems.length + '\n' + problems.join('\n') + '\nEND';
  document.body.appendChild(pre);
})();
</script>
EOF
{ grep -v -e '^</body>$' -e '^</html>$' "$tmp/report.html"; cat "$tmp/probe.js"; echo '</body></html>'; } >"$tmp/probe.html"
chrome probe --window-size=1400,900 --dump-dom "file://$tmp/probe.html" >"$tmp/probe_dom.html"
res=$(sed -n '/<pre id="probe">/,/END<\/pre>/p' "$tmp/probe_dom.html")
ntext=$(echo "$res" | sed -n 's/.*PROBE texts=\([0-9]*\) problems=\([0-9]*\).*/\1/p')
nprob=$(echo "$res" | sed -n 's/.*PROBE texts=\([0-9]*\) problems=\([0-9]*\).*/\2/p')
if [ -n "$ntext" ] && [ "$ntext" -gt 100 ]; then ok; else bad "layout probe did not run: $(echo "$res" | head -3)"; fi
if [ "$nprob" = 0 ]; then ok; else bad "layout problems: $(echo "$res" | sed -n '2,12p')"; fi

# 4. Screenshot: a real, non-blank PNG.
chrome shot --hide-scrollbars --window-size=1400,6400 --screenshot="$tmp/shot.png" "file://$tmp/report.html" >/dev/null
if [ -s "$tmp/shot.png" ] && [ "$(head -c 4 "$tmp/shot.png" | od -An -c | tr -d ' ')" = "211PNG" ] \
   && [ "$(wc -c <"$tmp/shot.png")" -gt 50000 ]; then ok; else bad "no usable screenshot ($(tail -3 "$tmp/err"))"; fi
if [ -n "${VMOER_REPORT_SHOT:-}" ] && [ -s "$tmp/shot.png" ]; then cp "$tmp/shot.png" "$VMOER_REPORT_SHOT"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
