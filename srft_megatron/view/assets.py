"""The page's CSS and JavaScript, inlined into every page.

Pages are opened from disk, mailed around and attached to issues, so they carry everything they
need: no fonts, scripts or stylesheets from elsewhere. The script only reads the `data-*`
attributes the Python side wrote (label, weight, token count of each step) and draws the
summary bar and the kept / rejected counts from them; a test runs it in headless Chromium.
"""

LABEL_COLOURS = {
    "good": "#2e7d32",
    "unnecessary": "#b8860b",
    "harmful": "#c62828",
    "recover": "#1565c0",
    None: "#757575",
}

CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #f6f7f9; }
header.page { background: #20232a; color: #fff; padding: 14px 24px; }
header.page h1 { margin: 0 0 4px; font-size: 20px; }
header.page .sub { color: #c9cdd4; font-size: 13px; }
.legend { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 10px; font-size: 12px; }
.legend .chip { padding: 1px 8px; border-radius: 10px; color: #fff; }
main { padding: 16px 24px; max-width: 1200px; }
table.index { border-collapse: collapse; width: 100%; background: #fff; margin-bottom: 20px; }
table.index th, table.index td { border-bottom: 1px solid #e3e5e8; padding: 5px 8px; text-align: left; }
table.index td.num { text-align: right; font-variant-numeric: tabular-nums; }
.minibar { display: flex; height: 10px; width: 220px; border-radius: 2px; overflow: hidden; }
.minibar span { flex: 1 1 0; margin-right: 1px; }
section.traj { background: #fff; border: 1px solid #dfe1e5; border-radius: 6px; padding: 14px 18px;
               margin-bottom: 24px; }
section.traj h2 { margin: 0 0 4px; font-size: 17px; }
.badge { font-size: 12px; padding: 1px 8px; border-radius: 10px; margin-left: 8px; vertical-align: middle; }
.badge.resolved { background: #e3f4e5; color: #1b5e20; }
.badge.unresolved { background: #fdecea; color: #b71c1c; }
.badge.unknown { background: #eee; color: #555; }
.meta { color: #5f6368; font-size: 12px; margin-bottom: 8px; }
.summary { margin: 8px 0 12px; }
.summary .bar { display: flex; height: 22px; border-radius: 3px; overflow: hidden; background: #eee; }
.summary .bar a { display: block; min-width: 4px; border-right: 1px solid #fff; }
.summary .bar a.rejected { background-image: repeating-linear-gradient(45deg, rgba(255,255,255,.55) 0 4px,
                           transparent 4px 8px); }
.summary .summary-text { margin-top: 4px; font-size: 13px; }
.summary .summary-text b { font-variant-numeric: tabular-nums; }
details.prompt, details.obs, details.call { margin: 6px 0; }
details > summary { cursor: pointer; color: #5f6368; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; background: #f4f5f7; padding: 8px; border-radius: 4px;
      margin: 4px 0; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; max-height: 480px;
      overflow: auto; }
ol.steps { list-style: none; padding: 0; margin: 0; }
li.step { border-left: 6px solid var(--label); padding: 6px 10px 6px 12px; margin: 10px 0; background: #fcfcfd;
          border-radius: 0 4px 4px 0; }
li.step.rejected { background: #fff7f7; }
.step-head { display: flex; flex-wrap: wrap; gap: 10px; align-items: baseline; }
.step-head .num { font-weight: 600; }
.step-head .label { color: #fff; background: var(--label); padding: 0 8px; border-radius: 10px; font-size: 12px; }
.step-head .kept { color: #1b5e20; font-size: 12px; font-weight: 600; }
.step-head .rejected-tag { color: #b71c1c; font-size: 12px; font-weight: 600; }
.step-head .counts { color: #5f6368; font-size: 12px; }
.reason { color: #3c4043; font-style: italic; font-size: 12px; margin: 2px 0 4px; }
.tokens { font: 12px/1.55 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; overflow-wrap: anywhere;
          word-break: break-word; padding: 6px; border-radius: 4px; border: 1px solid #e3e5e8; }
.tok { border-radius: 2px; }
.trained .tok:nth-child(odd) { background: #c8ebcf; }
.trained .tok:nth-child(even) { background: #a5dcb1; }
.masked .tok { color: #8a8f98; text-decoration: line-through; text-decoration-color: rgba(183,28,28,.45); }
.masked .tok:nth-child(odd) { background: #eceef1; }
.masked .tok:nth-child(even) { background: #dfe2e6; }
.tok.special { outline: 1px solid #7e57c2; color: #4527a0; }
.context { color: #5f6368; font-size: 12px; margin: 2px 0; }
"""

JS = """
(function () {
  function fmt(n) { return Math.round(n).toLocaleString('en-US'); }
  document.querySelectorAll('section.traj').forEach(function (sec) {
    var steps = Array.prototype.slice.call(sec.querySelectorAll('li.step'));
    var kept = 0, rejected = 0, trained = 0, stepTokens = 0;
    var bar = sec.querySelector('.summary .bar');
    steps.forEach(function (li) {
      var w = parseFloat(li.dataset.weight), n = parseInt(li.dataset.tokens, 10);
      stepTokens += n; trained += w * n;
      if (w > 0) { kept += 1; } else { rejected += 1; }
      var seg = document.createElement('a');
      seg.href = '#' + li.id;
      seg.className = w > 0 ? 'kept' : 'rejected';
      seg.style.background = li.dataset.colour;
      seg.style.flex = String(Math.max(n, 1)) + ' 1 0';
      seg.title = 'step ' + li.dataset.step + ': ' + (li.dataset.label || 'unlabelled') +
                  (w > 0 ? ' (kept, weight ' + w + ')' : ' (rejected)') + ', ' + n + ' tokens';
      bar.appendChild(seg);
    });
    var total = parseInt(sec.dataset.totalTokens, 10);
    sec.dataset.kept = kept; sec.dataset.rejected = rejected; sec.dataset.trainedTokens = Math.round(trained);
    var pct = total > 0 ? (100 * trained / total).toFixed(1) : '0.0';
    sec.querySelector('.summary-text').innerHTML =
      '<b class="n-steps">' + steps.length + '</b> steps: <b class="n-kept">' + kept + '</b> kept, ' +
      '<b class="n-rejected">' + rejected + '</b> rejected &middot; <b class="n-trained">' + fmt(trained) +
      '</b> of ' + fmt(total) + ' tokens trained (' + pct + '%), ' + fmt(stepTokens - trained) +
      ' step tokens masked, ' + fmt(total - stepTokens) + ' context tokens';
  });
  document.body.dataset.rendered = 'yes';
})();
"""
