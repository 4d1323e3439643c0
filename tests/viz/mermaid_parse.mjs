// Parses mermaid texts with mermaid's own parser (the npm package in .cache/mermaid):
// reads a JSON list of texts on stdin, prints a JSON list of null (parsed) or the error.
// DOMPurify needs a DOM that Node lacks; parsing never sanitizes, so it is stubbed.
import DOMPurify from "dompurify";

DOMPurify.addHook = () => {};
DOMPurify.sanitize = (text) => text;
const { default: mermaid } = await import("mermaid");

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const text of JSON.parse(input)) {
  try {
    const parsed = await mermaid.parse(text);
    results.push(parsed.diagramType === "stateDiagram" ? null : `parsed as ${parsed.diagramType}`);
  } catch (error) {
    results.push(String(error.message || error));
  }
}
process.stdout.write(JSON.stringify(results));
