// Scale-wise Guidance: shows, on the node itself, the text its last run sent to the page: the heat map's evenness /
// divergence scores, the sweep's balance report and the notes of the loaders, the text encoder, the sampler and the
// heat map (a stale config.json, a name that disagrees with the weights, precision, a mask that marks nothing). One function, render(node, output), draws a node from its
// output; it runs when the node executes and when the frontend restores outputs (switching workflow tabs, loading
// a job from the queue panel: the onNodeOutputsUpdated hook), which recreate the nodes without the text.
// Plain read-only DOM widgets (no canvas drawing), display only and never serialised, so it keeps working across
// frontend versions and in Nodes 2.0.
import { app } from "../../../scripts/app.js";

const fmt = (v) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(3));

function formatScores([json]) {
  const s = JSON.parse(json);
  const lines = [s.guider];
  const even = s.evenness?.mean ?? [];
  const div = s.divergence?.mean ?? [];
  even.forEach((e, i) => {
    lines.push(`image ${i}: E ${fmt(e)}` + (s.divergence ? `  D ${fmt(div[i])}` : "  (D: connect a mask)"));
  });
  const perScale = s.evenness?.per_scale?.[0] ?? [];
  if (perScale.length) {
    lines.push("per scale (image 0): " + perScale.map((e, k) => `k${k} ${fmt(e)}`).join(", "));
  }
  return lines.join("\n");
}

function formatBalance([json]) {
  const r = JSON.parse(json);
  const s = (v) => Number(v).toPrecision(3).replace(/\.?0+$/, "");
  const head = r.balance === "crossing" ? `balance: E = D at strength ${s(r.balance_strength)} (interpolated)`
    : r.balance === "closest" ? `balance: E and D do not cross; closest at strength ${s(r.balance_strength)}`
    : r.divergence ? "balance: D undefined (the masks leave no object or no background)"
    : "balance: no divergence (connect a foreground mask)";
  const source = r.mask === "judge" ? "D from the built-in model's judge masks"
    : r.mask === "connected" ? "D from the connected mask" : null;
  const rows = (r.strengths ?? []).map((x, i) =>
    `strength ${s(x)}: E ${fmt(r.evenness?.[i])}` + (r.divergence ? `  D ${fmt(r.divergence[i])}` : ""));
  return [head, ...(source ? [source] : []), ...rows].join("\n");
}

// Notes are a list of sentences; an empty list (a run without notes) shows nothing.
const formatNotes = (notes) => notes.filter((n) => typeof n === "string" && n).join("\n");

const NOTES = { key: "scalewise_info", widget: "notes_view", format: formatNotes, notes: true };
// node type -> the texts it shows: the ui key its run sends, the widget that shows it, how to write it
const VIEWS = {
  ScalewiseGuidanceHeatmap: [{ key: "scalewise_scores", widget: "scores_view", format: formatScores }, NOTES],
  ScalewiseSampler: [NOTES],
  ScalewiseGuidanceSweep: [{ key: "scalewise_balance", widget: "balance_view", format: formatBalance }],
  ScalewiseVARLoader: [NOTES],
  ScalewiseSwittiLoader: [NOTES],
  ScalewiseSwittiTextEncode: [NOTES],
};

// Notes are about the files (or prompts) their run was given, which the node sends along: once the node's widgets
// name others, the notes no longer apply. A cached loader is not run again, so no message would clear them.
function aboutThisNode(node, output) {
  const inputs = output?.scalewise_info_for?.[0];
  if (!inputs || typeof inputs !== "object") return true;
  return Object.entries(inputs).every(([name, value]) => {
    const widget = node.widgets?.find((w) => w.name === name);
    const linked = node.inputs?.some((i) => i.name === name && i.link != null);
    return !widget || linked || widget.value === value;
  });
}

// The notes last sent for each node type and the widget values they are about, newest last. A restored workflow can
// come without a node's output, or with it before its widgets have their saved values again; the notes about the
// files the widgets name are known all the same.
const notesSeen = [];

function remember(node, output) {
  const inputs = output?.scalewise_info_for?.[0];
  if (!inputs || typeof inputs !== "object" || !Array.isArray(output.scalewise_info)) return;
  const key = node.type + JSON.stringify(inputs);
  const at = notesSeen.findIndex((e) => e.key === key);
  if (at >= 0) notesSeen.splice(at, 1);
  notesSeen.push({ key, type: node.type, output });
  if (notesSeen.length > 100) notesSeen.shift();
}

/** The output whose notes are about what `node`'s widgets name now: `output` itself, else the newest remembered
 * one for the same files, else `output` (whose notes then do not show). */
function notesOutput(node, output) {
  if (output?.scalewise_info_for && aboutThisNode(node, output)) return output;
  for (let i = notesSeen.length - 1; i >= 0; i--) {
    const seen = notesSeen[i];
    if (seen.type === node.type && aboutThisNode(node, seen.output)) return seen.output;
  }
  return output;
}

function textOf(node, view, output) {
  if (view.notes) output = notesOutput(node, output);
  const value = output?.[view.key];
  if (!Array.isArray(value) || !value.length) return "";
  if (view.notes && !aboutThisNode(node, output)) return "";
  try {
    return view.format(value);
  } catch (err) {
    console.warn(`[scalewise] unreadable ${view.key}`, err);
    return "";
  }
}

// Lines a text takes in a node `width` px wide (11 px monospace: about 6.6 px a character), for the widget's height.
const linesOf = (text, width = 400) => {
  const perLine = Math.max(20, Math.floor((width - 24) / 6.6));
  return text.split("\n").reduce((n, line) => n + Math.max(1, Math.ceil(line.length / perLine)), 0);
};

function addView(node, view) {
  // A read-only DOM text area through the public node API; display only, never serialised.
  const area = document.createElement("textarea");
  area.readOnly = true;
  area.className = "scalewise-" + view.widget.replace("_", "-");
  area.style.cssText = "width:100%;box-sizing:border-box;font:11px monospace;resize:none;" +
    (view.notes ? "border-left:3px solid #d9a400;" : "");
  const widget = node.addDOMWidget(view.widget, "scalewise_text", area, {
    serialize: false,
    getValue: () => area.value,
    setValue: (v) => { area.value = v; },
    getMinHeight: () => Math.min(10, linesOf(area.value, node.size?.[0])) * 14 + 10,
  });
  widget.serialize = false;
  return widget;
}

/** Shows on `node` the texts of `output` (a node's ui outputs, as sent with `executed`; null or missing: none):
 * adds, updates or removes the node's text widgets, so the node always shows what this output says. */
const lastOutput = new WeakMap();   // node -> the output it shows, for redrawing when its widgets change

function render(node, output) {
  const views = VIEWS[node?.type];
  if (!views) return;
  lastOutput.set(node, output);
  remember(node, output);
  let changed = false;
  for (const view of views) {
    const text = textOf(node, view, output);
    let widget = node.widgets?.find((w) => w.name === view.widget);
    if (!text) {
      if (widget) {
        node.removeWidget(widget);
        changed = true;
      }
      continue;
    }
    widget ??= addView(node, view);
    widget.value = text;
    if (widget.element) widget.element.rows = Math.min(10, linesOf(text, node.size?.[0]));
    changed = true;
  }
  if (changed) {
    // grow the node to fit its text (never shrink what the user sized)
    const [w, h] = node.computeSize?.() ?? [0, 0];
    if (node.size && (node.size[0] < w || node.size[1] < h)) {
      node.setSize?.([Math.max(node.size[0], w), Math.max(node.size[1], h)]);
    }
    node.setDirtyCanvas?.(true, true);
  }
}

const rootGraph = () => app.rootGraph ?? app.graph;

/** The node an output key names: a node locator id ("7" in the root graph, "<subgraph uuid>:7" inside a
 * subgraph definition), or an execution id ("12:7": node 7 inside subgraph node 12), or null. */
function nodeByKey(root, key) {
  const parts = String(key).split(":");
  const last = parts.pop();
  if (!parts.length) return root.getNodeById?.(last) ?? null;
  const subgraph = parts.length === 1 ? root.subgraphs?.get?.(parts[0]) : null;
  if (subgraph) return subgraph.getNodeById?.(last) ?? null;
  let graph = root;
  for (const id of parts) {
    graph = graph?.getNodeById?.(id)?.subgraph;
  }
  return graph?.getNodeById?.(last) ?? null;
}

/** Every node of the pack's text-showing types, in the root graph and in every subgraph definition. */
function* nodesWithViews(root) {
  const graphs = [root, ...(root.subgraphs?.values?.() ?? [])];
  for (const graph of graphs) {
    for (const node of graph?.nodes ?? graph?._nodes ?? []) {
      if (VIEWS[node.type]) yield node;
    }
  }
}

app.registerExtension({
  name: "scalewise.guidance.heatmap",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!VIEWS[nodeData?.name]) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      render(this, message);
    };
    if (!VIEWS[nodeData.name].some((v) => v.notes)) return;
    // Notes about files the widgets no longer name go: at once where the frontend reports widget changes, at the
    // latest when a run starts (its prompt holds the widgets' values; a cached loader sends nothing). onConfigure:
    // a restored node gets its saved widget values after it may have been drawn from its outputs.
    const ours = new Set(VIEWS[nodeData.name].map((v) => v.widget));
    for (const hook of ["onWidgetChanged", "onExecutionStart", "onConfigure"]) {
      const previous = nodeType.prototype[hook];
      nodeType.prototype[hook] = function (name) {
        const result = previous?.apply(this, arguments);
        const isOurs = hook === "onWidgetChanged" && ours.has(name);   // our own text changing: nothing to redo
        if (!isOurs && lastOutput.has(this)) render(this, lastOutput.get(this));
        return result;
      };
    }
  },
  // The frontend replaced all node outputs (a restored workflow tab, a job loaded from the queue panel, outputs
  // cleared): draw every node of ours from the new outputs, so none keeps the text of a run it no longer shows.
  onNodeOutputsUpdated(nodeOutputs) {
    const root = rootGraph();
    if (!root) return;
    const byNode = new Map();
    for (const [key, output] of Object.entries(nodeOutputs ?? {})) {
      const node = nodeByKey(root, key);
      if (node && VIEWS[node.type]) byNode.set(node, output);
    }
    for (const node of nodesWithViews(root)) render(node, byNode.get(node));
    // Drawn again while the frontend finishes restoring the graph: notes are shown only while the widgets name the
    // files they are about, and a restore may set those values (asynchronously on some frontends) after this hook.
    for (const delay of [0, 250, 1000, 3000]) {
      setTimeout(() => {
        for (const node of nodesWithViews(rootGraph() ?? root)) render(node, lastOutput.get(node));
      }, delay);
    }
  },
});
