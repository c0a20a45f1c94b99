// vmasim view: draws the address space after each step from the JSON that vmasim.view.page_data() wrote.
// Plain JavaScript, no libraries, nothing fetched: the page works from file://.
(function () {
"use strict";
var D = JSON.parse(document.getElementById("vmasim-data").textContent);
var G = D.geometry, NS = "http://www.w3.org/2000/svg";
var MID = G.top + G.height / 2, BOTTOM = G.top + G.height;
var svg = document.getElementById("picture"), tip = document.getElementById("tip");
var slider = document.getElementById("slider");
var n = D.steps.length, shown = 0;

// Each step stores only the processes it changed; carry the others forward.
var states = [], cur = D.lanes.map(function () { return null; });
D.steps.forEach(function (s) {
  cur = cur.slice();
  Object.keys(s.set).forEach(function (k) { cur[+k] = s.set[k]; });
  states.push(cur);
});

function el(tag, attrs, parent, text) {
  var e = document.createElementNS(NS, tag);
  Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

// What fits inside a box: perms, what backs it, its anon_vma (about 6.6 px per character).
function labels(v) {
  var fits = Math.floor((v.w - 6) / 6.6), out = [v.perms, v.file || v.kind];
  if (v.av !== null) out.push("anon_vma " + v.av + (v.forked ? "*" : ""));
  return out.filter(function (t) { return t.length <= fits; });
}

function tipText(v, st, j) {
  var lines = v.details.slice();
  [["left", j - 1, j - 1], ["right", j + 1, j]].forEach(function (side) {
    var other = st[0][side[1]], reasons = st[1][side[2]];
    if (other === undefined || reasons === null || reasons === undefined) return;
    var o = D.vmas[other], why = reasons.map(function (r) { return D.reasons[r]; }).join("; ");
    lines.push("not merged with " + side[0] + " neighbour " + o.s + "-" + o.e + ": " +
               (why || "compatible, but nothing has tried to merge them"));
  });
  return lines.join("\n");
}

// The tooltip is fixed to the viewport: below the box (above it when there is no room), never past an edge.
function showTip(g, text) {
  tip.textContent = text;
  tip.style.display = "block";
  var r = g.getBoundingClientRect(), vw = document.documentElement.clientWidth, vh = window.innerHeight;
  var top = r.bottom + 6;
  if (top + tip.offsetHeight > vh && r.top - tip.offsetHeight - 6 >= 0) top = r.top - tip.offsetHeight - 6;
  tip.style.left = Math.max(4, Math.min(r.left, vw - tip.offsetWidth - 4)) + "px";
  tip.style.top = Math.max(4, top) + "px";
}

function hideTip() { tip.style.display = "none"; }

function drawBox(g, v, st, j, changed) {
  var b = el("g", {"class": "vma" + (changed ? " changed" : ""), tabindex: 0, "data-start": v.s, "data-end": v.e,
                   "aria-label": v.s + "-" + v.e + " " + v.perms + " " + (v.file || v.kind)}, g);
  el("rect", {"class": "box", x: v.x, y: G.top, width: v.w, height: G.height,
              fill: D.prot[v.perms.slice(0, 3)] || "#ccc",
              stroke: changed ? D.highlight : "#555", "stroke-width": changed ? 2.5 : 1}, b);
  if (v.kind !== "anonymous") {
    el("rect", {x: v.x + 0.5, y: G.top + 0.5, width: Math.max(v.w - 1, 0), height: G.band,
                fill: D.kinds[v.kind]}, b);
  }
  v.guards.forEach(function (r) {
    el("rect", {x: r[0], y: G.top, width: r[1], height: G.height, fill: "url(#hatch)"}, b);
  });
  v.pop.forEach(function (r) {
    el("rect", {x: r[0], y: BOTTOM - 5, width: r[1], height: 4, fill: "#333", opacity: 0.55}, b);
  });
  labels(v).forEach(function (t, i) {
    el("text", {x: v.x + 4, y: G.top + G.band + 13 + 13 * i, "class": "t"}, b, t);
  });
  var open = function () { showTip(b, tipText(v, st, j)); };
  b.addEventListener("mouseenter", open);
  b.addEventListener("focus", open);
  b.addEventListener("mouseleave", hideTip);
  b.addEventListener("blur", hideTip);
}

// Tick marks at every boundary; a label only where it does not run into the previous one.
function drawTicks(g, ticks) {
  ticks.sort(function (a, b) { return a[0] - b[0]; });
  var last = -1e9, seen = {};
  ticks.forEach(function (t) {
    var x = t[0], text = t[1][0], anchor = t[1][1];
    if (seen[x]) return;
    seen[x] = 1;
    el("line", {x1: x, y1: BOTTOM, x2: x, y2: BOTTOM + 5, stroke: "#555"}, g);
    var w = 6.1 * text.length, x0 = anchor === "start" ? x : anchor === "end" ? x - w : x - w / 2;
    if (x0 >= last + 4) {
      el("text", {x: x, y: BOTTOM + 17, "text-anchor": anchor, "class": "tk"}, g, text);
      last = x0 + w;
    }
  });
}

function drawLane(k, i) {
  var lane = D.lanes[i], step = D.steps[k], st = states[k][i];
  var g = el("g", {transform: "translate(0," + (i * G.lane) + ")", "class": "lane", "data-lane": i}, svg);
  var title = lane.title;
  if (st && lane.child && k > lane.last) title += " (exited)";
  if (lane.child && lane.born === k) title += " (forked at this step)";
  if (!st) {
    el("text", {x: 18, y: 16, "class": "lt"}, g, title);
    el("text", {x: 18, y: MID, "class": "ln"}, g, "not forked yet (from step " + (lane.born + 1) + ")");
    return;
  }
  el("text", {x: 18, y: 16, "class": "lt"}, g, title + " \u00b7 " + st[0].length + " VMA" +
     (st[0].length === 1 ? "" : "s"));
  D.runs.forEach(function (r) {
    el("line", {x1: r[0], y1: BOTTOM, x2: r[1], y2: BOTTOM, stroke: "#999"}, g);
    var used = st[0].some(function (id) { var v = D.vmas[id]; return v.x < r[1] && v.x + v.w > r[0]; });
    if (!used) {
      el("text", {x: (r[0] + r[1]) / 2, y: MID + 4, "text-anchor": "middle", "class": "ln"}, g,
         "nothing mapped here now");
    }
  });
  D.gaps.forEach(function (gp) {
    el("path", {d: "M" + (gp[0] + 4) + "," + MID + " l6,-6 l6,12 l6,-12 l6,12 l6,-6 H" + (gp[1] - 4),
                fill: "none", stroke: "#aaa"}, g);
    el("text", {x: (gp[0] + gp[1]) / 2, y: G.top - 4, "text-anchor": "middle", "class": "gp"}, g, gp[2] + " gap");
  });
  // What this step did here: the boundaries it made (solid) and removed (dashed), the VMAs it changed.
  var mark = step.marks[i] || [[], [], []], ticks = [];
  st[0].forEach(function (id, j) {
    var v = D.vmas[id];
    drawBox(g, v, st, j, mark[2].indexOf(id) >= 0);
    ticks.push([v.x, v.sl], [v.x + v.w, v.el]);
  });
  drawTicks(g, ticks);
  mark[0].forEach(function (x) {
    el("line", {"class": "newb", x1: x, y1: G.top - 7, x2: x, y2: BOTTOM + 7, stroke: D.highlight,
                "stroke-width": 3}, g);
  });
  mark[1].forEach(function (x) {
    el("line", {"class": "goneb", x1: x, y1: G.top - 7, x2: x, y2: BOTTOM + 7, stroke: D.highlight,
                "stroke-width": 2, "stroke-dasharray": "4 3"}, g);
  });
}

function draw(k) {
  svg.replaceChildren();
  var h = D.lanes.length * G.lane + 8;
  svg.setAttribute("width", D.width);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", "0 0 " + D.width + " " + h);
  var pat = el("pattern", {id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
                           patternTransform: "rotate(45)"}, el("defs", {}, svg));
  el("line", {x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#222", "stroke-width": 2.5}, pat);
  D.lanes.forEach(function (lane, i) { drawLane(k, i); });
}

function show(k) {
  if (!n) return;
  k = Math.max(0, Math.min(n - 1, k));
  var step = D.steps[k], lane = D.lanes[step.lane];
  shown = k;
  slider.value = k;
  hideTip();
  draw(k);
  document.getElementById("counter").textContent = "step " + (k + 1) + " of " + n;
  document.getElementById("op").textContent =
    "[" + step.path + "] " + (lane.child ? lane.title + ": " : "") + step.op + " = " + step.result;
  var ul = document.getElementById("changes");
  ul.replaceChildren();
  (step.changes.length ? step.changes : ["no VMA changed"]).forEach(function (c) {
    var li = document.createElement("li");
    li.textContent = c;
    ul.appendChild(li);
  });
  var items = document.getElementById("steps").children;
  for (var i = 0; i < items.length; i++) items[i].className = i === k ? "cur" : "";
  if (items[k]) items[k].scrollIntoView({block: "nearest"});
}

document.getElementById("comment").textContent = D.comment || "";
if (D.stopped) document.getElementById("stopped").textContent = "The run stopped: " + D.stopped;
var list = document.getElementById("steps");
D.steps.forEach(function (s, k) {
  var li = document.createElement("li"), c = document.createElement("span");
  li.textContent = "[" + s.path + "] " + s.op + " = " + s.result + "  ";
  li.style.paddingLeft = (10 + 24 * D.lanes[s.lane].depth) + "px";  // fork children indented
  c.className = "c";
  c.textContent = s.changes.join("; ");
  li.appendChild(c);
  li.addEventListener("click", function () { show(k); });
  list.appendChild(li);
});
slider.max = Math.max(0, n - 1);
slider.addEventListener("input", function () { show(+slider.value); });
document.getElementById("prev").addEventListener("click", function () { show(shown - 1); });
document.getElementById("next").addEventListener("click", function () { show(shown + 1); });
document.addEventListener("keydown", function (e) {
  if (e.target === slider || e.altKey || e.ctrlKey || e.metaKey) return;  // the slider moves itself
  var to = {ArrowLeft: shown - 1, ArrowRight: shown + 1, Home: 0, End: n - 1}[e.key];
  if (to === undefined) return;
  e.preventDefault();
  show(to);
});
var m = /step=(\d+)/.exec(location.hash);
show(m ? +m[1] - 1 : D.start);
})();
