// h("div", {class: "x", onclick: fn}, "text", child) -> Element. Text is always set as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/**
 * Text split into plain runs and <mark>s at [start, end) code-point offsets (as the service counts).
 * Spans may overlap (a tracked promise often covers a forbidden word): where they do, the one that
 * comes first in ``spans`` wins, so pass them most serious first.
 */
export function marked(text, spans, attrsOf) {
  const chars = Array.from(text);
  const owner = new Array(chars.length).fill(-1);
  spans.forEach((s, i) => {
    for (let c = Math.max(0, s.start); c < Math.min(s.end, chars.length); c += 1) if (owner[c] < 0) owner[c] = i;
  });
  const out = [];
  let at = 0;
  while (at < chars.length) {
    let end = at + 1;
    while (end < chars.length && owner[end] === owner[at]) end += 1;
    const run = chars.slice(at, end).join("");
    out.push(owner[at] < 0 ? run : h("mark", attrsOf(spans[owner[at]]), run));
    at = end;
  }
  return out;
}

export const pct = (x) => `${Math.round(x * 100)}%`;
