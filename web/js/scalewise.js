// Scale-wise Guidance: shows the evenness / divergence scores on the Guidance Heatmap node after it runs.
// Plain widgets only (no canvas drawing), so it keeps working across frontend versions.
import { app } from "../../../scripts/app.js";

const HEATMAP = "ScalewiseGuidanceHeatmap";

function formatScores(json) {
  const s = JSON.parse(json);
  const fmt = (v) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(3));
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

app.registerExtension({
  name: "scalewise.guidance.heatmap",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== HEATMAP) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const json = message?.scalewise_scores?.[0];
      if (!json) return;
      let text;
      try {
        text = formatScores(json);
      } catch (err) {
        console.warn("[scalewise] unreadable scores", err);
        return;
      }
      let widget = this.widgets?.find((w) => w.name === "scores_view");
      if (!widget) {
        // A read-only DOM text area through the public node API; display only, never serialised.
        const area = document.createElement("textarea");
        area.readOnly = true;
        area.style.cssText = "width:100%;min-height:4.5em;font:11px monospace;resize:none;";
        widget = this.addDOMWidget("scores_view", "scalewise_scores", area, {
          serialize: false,
          getValue: () => area.value,
          setValue: (v) => { area.value = v; },
        });
        widget.serialize = false;
      }
      widget.value = text;
      this.setDirtyCanvas?.(true, true);
    };
  },
});
