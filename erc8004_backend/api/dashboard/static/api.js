// The JSON API of the same origin, signed in by the session cookie. Requests that change
// something carry the CSRF token the server put in a readable cookie (the session cookie
// itself is HttpOnly: no script here ever sees the access token).

const BASE = new URL("api/v1/", document.baseURI);
const CSRF_COOKIE = "erc8004_csrf";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === "object" ? body.error : null;
    super(error?.message ?? `the server answered ${status}`);
    this.status = status;
    this.details = Array.isArray(error?.details) ? error.details : [];
  }
}

let onSignedOut = () => {};
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return "";
}

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), BASE);
  for (const [key, value] of Object.entries(query)) {
    // A list is the parameter repeated (clients=0x..&clients=0x..), as the API reads lists.
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") url.searchParams.append(key, one);
    }
  }
  return url;
}

export async function api(method, path, { body, query, headers = {}, quiet401 = false } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  if (UNSAFE.has(method)) sent["X-CSRF-Token"] = cookie(CSRF_COOKIE);
  const response = await fetch(apiUrl(path, query), {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && !quiet401) onSignedOut();
    throw new ApiError(response.status, data);
  }
  return data;
}

// Every item of a list route, page after page (its keyset cursor passed back), in order.
export async function allItems(path, query = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await api("GET", path, { query: { ...query, limit: 200, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

// The API's own description: the enums of condition types, operators and channels.
let openapi = null;
export async function schema() {
  openapi ??= await api("GET", "openapi.json");
  return openapi;
}
