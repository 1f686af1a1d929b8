// Live events: GET events/stream (Server-Sent Events) with filters; pausing keeps the
// events that come meanwhile and shows them on resuming.
import { api, apiUrl } from "./api.js";
import { h, replace, time, notice } from "./dom.js";
import { field, form, input, onSubmit, select } from "./forms.js";

const KEEP = 200; // events shown at most
const TYPES = ["", "Registered", "URIUpdated", "MetadataSet", "Transfer", "NewFeedback",
  "FeedbackRevoked", "ResponseAppended", "ValidationRequest", "ValidationResponse"];

export function eventsPage(body, { onLeave }) {
  const chain = input({ type: "number", min: 1 });
  const registry = select([["", "any"], "identity", "reputation", "validation"]);
  const eventType = select(TYPES.map((type) => [type, type || "any"]));
  const agent = input({ type: "number", min: 0 });
  const state = h("p", { role: "status" }, "Not connected.");
  const pause = h("button", { type: "button", class: "secondary", disabled: true }, "Pause");
  const rows = h("tbody");
  let source = null;
  let paused = false;
  const held = [];

  const show = (event) => {
    rows.prepend(h("tr", {},
      h("td", { "data-label": "Id" }, String(event.id)),
      h("td", { "data-label": "Time" }, time(event.block_time)),
      h("td", { "data-label": "Chain" }, String(event.chain_id)),
      h("td", { "data-label": "Event" }, event.event_type),
      h("td", { "data-label": "Agent" }, event.agent_id ?? "—"),
      h("td", { "data-label": "Block" }, `${event.block_number}${event.confirmed ? "" : " (unconfirmed)"}`),
      h("td", { "data-label": "Details" }, [event.client_address, event.tag1, event.tag2,
        event.score ?? event.value, event.token_uri].filter((v) => v !== undefined && v !== null && v !== "").join(" · "))));
    while (rows.children.length > KEEP) rows.lastChild.remove();
  };

  const close = () => {
    source?.close();
    source = null;
  };
  onLeave(close);

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) held.splice(0).forEach(show);
    state.textContent = paused ? "Paused: new events are kept until you resume." : "Live.";
  });

  const filters = form({ "aria-label": "Filter events", class: "filters" },
    h("div", { class: "row" },
      field("Chain id", chain, { path: "chain_id" }),
      field("Registry", registry, { path: "registry" }),
      field("Event type", eventType, { path: "event_type" }),
      field("Agent id", agent, { path: "agent_id", hint: "Needs a chain id." })),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Connect"), pause));
  onSubmit(filters, async () => {
    const query = { chain_id: chain.value, registry: registry.value,
      event_type: eventType.value, agent_id: agent.value };
    // The stream cannot show why it refuses filters: the list route checks them first.
    await api("GET", "events", { query: { ...query, limit: 1 } });
    close();
    held.length = 0;
    source = new EventSource(apiUrl("events/stream", query));
    source.addEventListener("open", () => { state.textContent = paused ? "Paused." : "Live."; });
    source.addEventListener("error", () => { state.textContent = "Reconnecting…"; });
    source.addEventListener("message", (message) => {
      const event = JSON.parse(message.data);
      if (paused) held.push(event);
      else show(event);
    });
    pause.disabled = false;
  });

  body.append(filters, state,
    h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Events" },
      h("table", {}, h("caption", {}, "Events, newest first"),
        h("thead", {}, h("tr", {}, ["Id", "Time", "Chain", "Event", "Agent", "Block", "Details"]
          .map((label) => h("th", { scope: "col" }, label)))),
        rows)));
  filters.requestSubmit();
}
