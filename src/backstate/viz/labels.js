// Mermaid hands the labels' entities (backstate.viz writes every risky character as
// one, "#60;") on as HTML character references ("&#60;"), which an SVG <text> shows as
// they are. This decodes them in the text nodes of a drawn diagram: as text, never
// markup. Label wrapping can split a reference across two lines' nodes, so a partial
// one at the end of a node is carried into the next. Used by the dashboard and by
// `backstate viz` SVG/PNG.
"use strict";

function backstateDecodeLabels(root) {
  const decode = (text) => text.replace(/&#(\d+);/g, (_, code) => String.fromCodePoint(Number(code)));
  for (const label of root.querySelectorAll("text")) {
    const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT);
    const nodes = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
    for (let i = 0; i < nodes.length; i++) {
      const partial = nodes[i].nodeValue.match(/&#\d*$/);
      if (partial && i + 1 < nodes.length) {
        nodes[i].nodeValue = nodes[i].nodeValue.slice(0, partial.index);
        nodes[i + 1].nodeValue = partial[0] + nodes[i + 1].nodeValue;
      }
      nodes[i].nodeValue = decode(nodes[i].nodeValue);
    }
  }
}
