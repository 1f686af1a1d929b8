// The dashboard's shell: who is signed in, the navigation, and a page per location hash
// (#/triggers, #/agents/31337/4, ...). Pages are functions that render into <main>.
import { api, whenSignedOut } from "./api.js";
import { h, replace, notice } from "./dom.js";
import { signInPage, signUpPage } from "./page-auth.js";
import { accountPage } from "./page-account.js";
import { statusPage } from "./page-status.js";
import { triggersPage } from "./page-triggers.js";
import { editorPage } from "./page-editor.js";
import { deliveriesPage, deliveryPage } from "./page-deliveries.js";
import { eventsPage } from "./page-events.js";
import { agentsPage, agentPage } from "./page-agents.js";

const main = document.getElementById("main");
const session = { user: null };

// [pattern, page, title, needs a signed-in user]
const ROUTES = [
  [/^\/sign-in$/, signInPage, "Sign in", false],
  [/^\/sign-up$/, signUpPage, "Sign up", false],
  [/^\/status$/, statusPage, "Status", true],
  [/^\/triggers$/, triggersPage, "Triggers", true],
  [/^\/triggers\/new$/, editorPage, "New trigger", true],
  [/^\/triggers\/([0-9a-f-]{36})$/, editorPage, "Trigger", true],
  [/^\/deliveries$/, deliveriesPage, "Deliveries", true],
  [/^\/deliveries\/([0-9]+)$/, deliveryPage, "Delivery", true],
  [/^\/events$/, eventsPage, "Live events", true],
  [/^\/agents$/, agentsPage, "Agents", true],
  [/^\/agents\/([0-9]+)\/([0-9]+)$/, agentPage, "Agent", true],
  [/^\/account$/, accountPage, "Account", true],
];

let leaving = null; // the current page's clean-up (an event stream to close)

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

function showSession() {
  const signedIn = session.user !== null;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("session").hidden = !signedIn;
  replace(document.getElementById("who"), signedIn ? `Signed in as ${session.user.username}` : "");
}

async function route() {
  const [hashPath, queryText] = location.hash.replace(/^#/, "").split("?");
  const path = hashPath || (session.user ? "/status" : "/sign-in");
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) return go(session.user ? "/status" : "/sign-in");
  const [pattern, page, title, private_] = found;
  if (private_ && !session.user) return go("/sign-in");
  if (!private_ && session.user) return go("/status");
  leaving?.();
  leaving = null;
  document.title = `${title} · erc8004 dashboard`;
  for (const link of document.querySelectorAll("#nav a")) {
    const current = path.startsWith(link.getAttribute("href").slice(1));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const heading = h("h1", { tabindex: "-1" }, title);
  const body = h("div", { class: "page" });
  replace(main, heading, body);
  try {
    const context = { session, go, signedIn, query: new URLSearchParams(queryText ?? ""),
      onLeave: (callback) => { leaving = callback; } };
    await page(body, context, ...pattern.exec(path).slice(1));
  } catch (error) {
    if (error.status !== 401) replace(body, notice(error.message, "error"));
  }
  heading.focus();
}

async function signedIn() {
  try {
    session.user = await api("GET", "me", { quiet401: true });
  } catch {
    session.user = null;
  }
  showSession();
}

whenSignedOut(() => {
  session.user = null;
  showSession();
  go("/sign-in");
});

document.getElementById("sign-out").addEventListener("click", async () => {
  await api("DELETE", "auth/session").catch(() => {});
  session.user = null;
  showSession();
  go("/sign-in");
});

window.addEventListener("hashchange", route);
await signedIn();
route();
