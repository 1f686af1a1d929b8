// Live events: the latest events, then GET events/stream (Server-Sent Events) with the same
// filters; pausing keeps the events that come meanwhile and shows them on resuming.
import { api, apiUrl } from "./api.js";
import { h, time } from "./dom.js";
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

  // The stream is read with fetch, not EventSource: it can send Last-Event-ID on the first
  // connection too, so the stream starts right after the newest event listed (no gap
  // between the list and the stream), and it can be aborted.
  let reading = null;
  const close = () => {
    reading?.abort();
    reading = null;
  };
  onLeave(close);

  const receive = (event) => {
    if (paused) held.push(event);
    else show(event);
  };

  async function follow(query, after, controller) {
    let last = after;
    while (!controller.signal.aborted) {
      try {
        const response = await fetch(apiUrl("events/stream", query), {
          headers: { Accept: "text/event-stream", "Last-Event-ID": String(last) },
          credentials: "same-origin", signal: controller.signal,
        });
        if (!response.ok) throw new Error(`the stream answered ${response.status}`);
        state.textContent = paused ? "Paused: new events are kept until you resume." : "Live.";
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replaceAll("\r\n", "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let data = "";
            for (const line of message.split("\n")) {
              if (line.startsWith("id:")) last = line.slice(3).trim() || last;
              else if (line.startsWith("data:")) data += line.slice(5).trimStart();
            }
            if (data) receive(JSON.parse(data));
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        state.textContent = `Reconnecting… (${error.message})`;
      }
      await new Promise((resolve) => { setTimeout(resolve, 2000); });
    }
  }

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
    // The latest events first: the list route also says why it refuses filters, at them.
    const recent = await api("GET", "events", { query: { ...query, limit: 20 } });
    close();
    held.length = 0;
    rows.replaceChildren();
    recent.items.slice().reverse().forEach(show);
    const newest = Math.max(0, ...recent.items.map((event) => event.id));
    reading = new AbortController();
    follow(query, newest, reading);
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
