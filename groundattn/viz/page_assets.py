"""The script and the style of the attention page (:mod:`groundattn.viz.page`), inline.

Kept as Python strings, not package data files, so that every install of
groundattn has them. Plain JavaScript (ES2017) and SVG, no library. The script
reads the JSON block ``#ga-data``, draws one panel per model into ``#ga-panels``
and then sets ``data-groundattn="drawn"`` on ``<html>`` with the number of
labels that do not fit their drawing (``data-clipped``, 0 by construction:
columns are as wide as their longest measured label). A failure is shown in
``#ga-failure`` and marked ``data-groundattn="failed"``.
"""

STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 12px 16px; color: #222; }
h1 { font-size: 17px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0; }
ul.ga-models, ol.ga-captions { margin: 2px 0; }
.ga-note { color: #555; font-size: 12px; }
#ga-failure { color: #b00; font-weight: bold; }
#ga-panels { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.ga-panel { border: 1px solid #ccc; border-radius: 4px; padding: 8px; }
.ga-source { color: #555; font-size: 12px; margin: 0 0 6px; word-break: break-all; }
.ga-controls { display: flex; flex-wrap: wrap; gap: 6px 12px; margin-bottom: 6px; }
.ga-controls label { white-space: nowrap; }
.ga-legend { font-size: 12px; color: #333; margin: 4px 0; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg text.ga-phrase { font-weight: bold; }
svg text.ga-weight { fill: #1f4e9c; font-size: 11px; }
rect.ga-phrase-mark { fill: #ffe28a; }
line.ga-line { stroke: #1f5fbf; stroke-width: 2; }
line.ga-line.ga-hidden { display: none; }
.ga-token { cursor: pointer; }
.ga-token.ga-active text { fill: #c0392b; }
rect.ga-grounded { fill: none; stroke: #00bcd4; stroke-width: 2; stroke-dasharray: 4 2; }
rect.ga-frame { fill: none; stroke: #999; stroke-width: 1; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const root = document.documentElement;
  const THUMB = 34, TEXT_ROW = 18, REGION_ROW = THUMB + 6, GAP = 170, NUM = 38, PAD = 6;
  const MIN_LINE = 0.005, HEAT = 220;

  function fail(message) {
    root.dataset.groundattn = "failed";
    const box = document.getElementById("ga-failure");
    box.textContent = "The attention drawing failed: " + message;
    box.hidden = false;
  }
  window.addEventListener("error", (event) => fail(event.message));

  function svg(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }
  function tag(name, attrs, parent, text) {
    const node = document.createElement(name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function select(parent, label, options, onChange) {
    const wrap = tag("label", {}, parent, label + " ");
    const menu = tag("select", {}, wrap);
    for (const [value, text] of options) tag("option", { value: value }, menu, text);
    menu.addEventListener("change", () => onChange(menu.value));
    return menu;
  }

  const data = JSON.parse(document.getElementById("ga-data").textContent);
  const regions = data.regions, R = regions.length;
  const grounded = new Set(data.grounded);

  // (T, R) weights of one model for the panel's state: lines[i][j] joins text i and region j.
  function weights(model, state) {
    const T = model.text.length, toRegions = state.direction === "t2r";
    let block;  // rows = query tokens of the direction
    if (state.source === "rollout") {
      block = (toRegions ? model.rollout_t2r : model.rollout_r2t)[state.layer];
    } else {
      const heads = (toRegions ? model.t2r : model.r2t)[state.layer];
      const chosen = state.head === "mean" ? heads : [heads[Number(state.head)]];
      block = chosen[0].map((row, q) =>
        row.map((_, k) => chosen.reduce((sum, h) => sum + h[q][k], 0) / chosen.length));
    }
    const rows = block.map((row) => row.map((v) => v / data.scale));
    if (state.renormalize) {
      for (const row of rows) {
        const total = row.reduce((a, b) => a + b, 0) || 1;
        for (let k = 0; k < row.length; k++) row[k] /= total;
      }
    }
    if (toRegions) return rows;  // (T, R)
    return Array.from({ length: T }, (_, i) => rows.map((row) => row[i]));  // (R, T) -> (T, R)
  }

  // The phrase's attention over the regions, renormalised (as the PNGs): (R,).
  function phraseRegions(model, state) {
    const t2r = weights(model, Object.assign({}, state, { direction: "t2r", renormalize: false }));
    const mean = regions.map((_, j) =>
      model.phrase_tokens.reduce((s, i) => s + t2r[i][j], 0) / model.phrase_tokens.length);
    const total = mean.reduce((a, b) => a + b, 0) || 1;
    return mean.map((v) => v / total);
  }

  function thumbnail(parent, box, x, y, size) {
    const [x1, y1, x2, y2] = box;
    const view = svg("svg", {
      x: x, y: y, width: size, height: size,
      viewBox: [x1, y1, Math.max(x2 - x1, 1), Math.max(y2 - y1, 1)].join(" "),
      preserveAspectRatio: "xMidYMid meet",
    }, parent);
    svg("use", { href: "#ga-image" }, view);
    return view;
  }

  function panel(model, index, panels) {
    const T = model.text.length;
    const state = {
      layer: model.layers.length - 1, head: "mean", source: "attention",
      direction: "t2r", renormalize: true, hover: null,
    };
    const box = tag("section", { class: "ga-panel", "data-model": model.name }, panels);
    tag("h2", {}, box, "model " + model.name);
    tag("p", { class: "ga-source" }, box, "run " + model.source + " · " + model.num_layers +
      " layers × " + model.num_heads + " heads · image " + data.image.width + " × " +
      data.image.height + " px, " + R + " regions (r0 = whole image)");
    const controls = tag("div", { class: "ga-controls" }, box);
    const menus = {};
    const redraw = () => draw();
    menus.layer = select(controls, "layer", model.layers.map((l, i) => [i, "layer " + l]),
      (v) => { state.layer = Number(v); redraw(); });
    menus.head = select(controls, "head", [["mean", "mean of heads"]].concat(
      model.heads.map((h, i) => [i, "head " + h])), (v) => { state.head = v; redraw(); });
    menus.source = select(controls, "show", [["attention", "attention"],
      ["rollout", "rollout"]], (v) => {
      state.source = v; menus.head.disabled = v === "rollout"; redraw();
    });
    menus.direction = select(controls, "direction", [["t2r", "text → regions"],
      ["r2t", "regions → text"]], (v) => { state.direction = v; redraw(); });
    menus.renormalize = select(controls, "weights", [["1", "renormalised over the block"],
      ["0", "raw probabilities"]], (v) => { state.renormalize = v === "1"; redraw(); });
    menus.layer.value = state.layer;
    const legend = tag("p", { class: "ga-legend" }, box);

    // Heat of the phrase on the picture.
    const scale = HEAT / Math.max(data.image.width, data.image.height);
    const heatTitle = tag("p", { class: "ga-legend" }, box);
    const heat = svg("svg", {
      class: "ga-heat", width: data.image.width * scale, height: data.image.height * scale,
    }, box);
    const heatRoot = svg("g", { transform: "scale(" + scale + ")" }, heat);
    svg("use", { href: "#ga-image" }, heatRoot);
    const heatBoxes = regions.map((region, j) => {
      const [x1, y1, x2, y2] = region.box;
      return svg("rect", {
        x: x1, y: y1, width: x2 - x1, height: y2 - y1, fill: "#ff7f0e",
        stroke: grounded.has(j) ? "#00bcd4" : "none", "stroke-width": 2 / scale,
        "stroke-dasharray": grounded.has(j) ? 4 / scale + " " + 2 / scale : "none",
      }, heatRoot);
    });

    // Token columns: labels measured first, then laid out so that none is cut.
    const drawing = svg("svg", { class: "ga-attention" }, box);
    const defs = svg("defs", {}, drawing);
    const pattern = svg("image", { id: "ga-image", href: data.image.uri, width: data.image.width,
      height: data.image.height, preserveAspectRatio: "none" }, defs);
    if (index > 0) pattern.remove();  // one copy of the picture per page (the first panel's)
    const lineLayer = svg("g", {}, drawing);
    const phrase = new Set(model.phrase_tokens);
    const textNodes = model.text.map((label, i) => {
      const group = svg("g", { class: "ga-token ga-text", "data-index": i }, drawing);
      const mark = phrase.has(i) ? svg("rect", { class: "ga-phrase-mark" }, group) : null;
      const text = svg("text", { "text-anchor": "end", class: phrase.has(i) ? "ga-phrase" : "" },
        group);
      text.textContent = label;
      const weight = svg("text", { class: "ga-weight", "text-anchor": "end" }, group);
      return { group, mark, text, weight };
    });
    const regionNodes = regions.map((region, j) => {
      const group = svg("g", { class: "ga-token ga-region", "data-index": j }, drawing);
      const text = svg("text", { class: grounded.has(j) ? "ga-phrase" : "" }, group);
      text.textContent = region.label + (grounded.has(j) ? " ◆" : "");
      const weight = svg("text", { class: "ga-weight" }, group);
      return { group, text, weight };
    });
    const textWidth = Math.max(...textNodes.map((n) => n.text.getComputedTextLength()));
    const regionWidth = Math.max(...regionNodes.map((n) => n.text.getComputedTextLength()));
    const textX = PAD + NUM + textWidth, regionX = textX + GAP;
    // Regions spread over the text column's height (at most 3 thumbnails apart).
    const regionRow = Math.min(3 * REGION_ROW, Math.max(REGION_ROW, (T * TEXT_ROW) / R));
    const top = 10, textTop = top + TEXT_ROW, regionTop = top;
    const height = Math.max(textTop + T * TEXT_ROW, regionTop + R * regionRow) + PAD;
    const width = regionX + THUMB + NUM + regionWidth + PAD;
    drawing.setAttribute("width", width);
    drawing.setAttribute("height", height);
    box.style.width = Math.max(width, 360) + "px";
    const textY = (i) => textTop + i * TEXT_ROW;
    const regionY = (j) => regionTop + j * regionRow + THUMB / 2;
    textNodes.forEach((n, i) => {
      n.text.setAttribute("x", textX);
      n.text.setAttribute("y", textY(i) + 4);
      n.weight.setAttribute("x", PAD + NUM - 6);
      n.weight.setAttribute("y", textY(i) + 4);
      if (n.mark) {
        const w = n.text.getComputedTextLength();
        for (const [k, v] of Object.entries({ x: textX - w - 2, y: textY(i) - 9, width: w + 4,
          height: 16 })) n.mark.setAttribute(k, v);
      }
    });
    regionNodes.forEach((n, j) => {
      const y = regionY(j) - THUMB / 2;
      const view = thumbnail(n.group, regions[j].box, regionX, y, THUMB);
      n.group.insertBefore(view, n.text);
      svg("rect", { class: grounded.has(j) ? "ga-grounded" : "ga-frame", x: regionX, y: y,
        width: THUMB, height: THUMB }, n.group);
      n.weight.setAttribute("x", regionX + THUMB + 4);
      n.weight.setAttribute("y", regionY(j) + 4);
      n.text.setAttribute("x", regionX + THUMB + NUM);
      n.text.setAttribute("y", regionY(j) + 4);
    });

    let lines = [];
    function draw() {
      const w = weights(model, state);
      lineLayer.replaceChildren();
      lines = [];
      for (let i = 0; i < T; i++) {
        for (let j = 0; j < R; j++) {
          if (w[i][j] < MIN_LINE) continue;
          const line = svg("line", {
            class: "ga-line", x1: textX + 4, y1: textY(i), x2: regionX - 4, y2: regionY(j),
            "stroke-opacity": Math.min(1, w[i][j]).toFixed(3), "data-text": i, "data-region": j,
          }, lineLayer);
          lines.push({ line, i, j, w: w[i][j] });
        }
      }
      const layer = model.layers[state.layer];
      const what = state.source === "rollout" ? "rollout up to layer " + layer :
        "layer " + layer + ", " + (state.head === "mean" ? "mean of heads" :
          "head " + model.heads[Number(state.head)]);
      const uniform = state.direction === "t2r" ? "1/" + R + " = " + (1 / R).toFixed(3) :
        "1/" + T + " = " + (1 / T).toFixed(3);
      legend.textContent = what + ". Line opacity = weight on a fixed 0 … 1 scale (" +
        (state.renormalize ? "rows renormalised over the block: uniform is " + uniform :
          "raw probabilities") + "); lines under " + MIN_LINE + " are not drawn. " +
        "Hover a token for its weights. Highlighted: the phrase; ◆ and dashed cyan: " +
        "its grounded regions.";
      const heatWeights = phraseRegions(model, state);
      heatBoxes.forEach((rect, j) => {
        rect.setAttribute("fill-opacity", j === 0 ? 0 : (0.8 * heatWeights[j]).toFixed(3));
      });
      heatTitle.textContent = "phrase → regions: fill opacity = weight (0 … 1); r0 " +
        heatWeights[0].toFixed(2);
      hover();
    }

    function hover() {
      const h = state.hover;
      for (const { line, i, j } of lines) {
        const keep = !h || (h.side === "text" ? i === h.index : j === h.index);
        line.classList.toggle("ga-hidden", !keep);
      }
      textNodes.forEach((n, i) => {
        n.group.classList.toggle("ga-active", !!h && h.side === "text" && h.index === i);
        n.weight.textContent = "";
      });
      regionNodes.forEach((n, j) => {
        n.group.classList.toggle("ga-active", !!h && h.side === "region" && h.index === j);
        n.weight.textContent = "";
      });
      if (!h) return;
      const w = weights(model, state);
      if (h.side === "text") {
        regionNodes.forEach((n, j) => { n.weight.textContent = w[h.index][j].toFixed(2); });
      } else {
        textNodes.forEach((n, i) => { n.weight.textContent = w[i][h.index].toFixed(2); });
      }
    }

    const listen = (nodes, side) => nodes.forEach((n, index) => {
      n.group.addEventListener("mouseenter", () => { state.hover = { side, index }; hover(); });
      n.group.addEventListener("mouseleave", () => { state.hover = null; hover(); });
    });
    listen(textNodes, "text");
    listen(regionNodes, "region");
    draw();
    return { drawing, labels: [...textNodes, ...regionNodes].map((n) => n.text) };
  }

  try {
    const panels = document.getElementById("ga-panels");
    const drawn = data.models.map((model, index) => panel(model, index, panels));
    let clipped = 0;
    for (const { drawing, labels } of drawn) {
      const width = Number(drawing.getAttribute("width"));
      for (const label of labels) {
        const box = label.getBBox();
        if (box.x < 0 || box.x + box.width > width + 0.5) clipped += 1;
      }
    }
    root.dataset.clipped = clipped;
    root.dataset.groundattn = "drawn";
  } catch (error) {
    fail(error && error.message ? error.message : String(error));
  }
})();
"""
