// Model-written Markdown to DOM, safely: marked turns it into HTML, DOMPurify keeps only plain
// formatting (no scripts, handlers, styles, forms, frames or raw embedded HTML), and links open
// outside the app without handing it the opener.

import { marked } from "./marked.js";
import DOMPurify from "./purify.js";

const ALLOWED_TAGS = [
  "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre",
  "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
];
const ALLOWED_ATTR = ["href", "title", "start", "align"];

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
});

/** A fragment rendering `text` (Markdown) with nothing executable in it. */
export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""), { async: false, gfm: true });
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i, // no javascript:, data: or relative app URLs
    RETURN_DOM_FRAGMENT: true,
  });
}
