// Building the page from data without ever parsing data as markup: every string becomes a
// text node (Node.append) or an attribute value (setAttribute), never innerHTML. Values from
// chains and users (names, tags, URIs, registration files) are untrusted.

// Set as properties, not attributes: their live state (a checkbox's checked) is the property.
const PROPERTIES = new Set(["value", "checked", "disabled", "selected", "hidden", "open"]);

export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (PROPERTIES.has(name)) {
      element[name] = value;
    } else if (value !== false) {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

const LONGEST_SHOWN = 80; // characters of a URI shown (data: URIs run to kilobytes)

function shortened(text) {
  return text.length > LONGEST_SHOWN ? `${text.slice(0, LONGEST_SHOWN)}…` : text;
}

// A link only for http(s) URLs; anything else (javascript:, data:, ipfs:) is shown as text.
// A long one is cut, whole in its title.
export function externalLink(url) {
  if (typeof url !== "string" || url === "") return "";
  let parsed = null;
  try {
    parsed = new URL(url);
  } catch {
    // not a URL: text
  }
  if (parsed?.protocol !== "http:" && parsed?.protocol !== "https:") {
    return url.length > LONGEST_SHOWN ? h("span", { title: url }, shortened(url)) : url;
  }
  return h("a", { href: parsed.href, rel: "noopener noreferrer nofollow", target: "_blank",
    title: url.length > LONGEST_SHOWN ? url : undefined }, shortened(url));
}

export function time(value) {
  if (!value) return "—";
  const date = new Date(value);
  return h("time", { datetime: date.toISOString(), title: date.toISOString() },
    date.toLocaleString());
}

export function json(value) {
  // Focusable: a long one scrolls, and the keyboard must reach it.
  return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
}

export function table(caption, columns, rows, { empty = "None." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, `${caption}: ${empty}`);
  return h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows.map((row) =>
        h("tr", {}, columns.map(([label, cell]) => h("td", { "data-label": label }, cell(row))))))));
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), children);
}

export function notice(text, kind = "info") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

// A secret shown once (an API key, a webhook secret): selectable, with a copy button.
export function secretOnce(label, secret) {
  const output = h("code", { class: "secret" }, secret);
  return h("div", { class: "notice secret-once", role: "status" },
    h("p", {}, `${label} (shown this once: copy it now):`),
    output,
    h("button", {
      type: "button", class: "secondary",
      onclick: () => navigator.clipboard?.writeText(secret),
    }, "Copy"));
}
