// Deliveries: the user's jobs with filters; one job's inspector (its payload and each
// attempt's request and response) and redelivery.
import { allItems, api } from "./api.js";
import { h, json, notice, replace, section, table, time } from "./dom.js";
import { field, form, input, onSubmit, select } from "./forms.js";

const STATES = [["", "any"], "queued", "retrying", "running", "delivered", "dead", "cancelled"];

const REFRESH_MS = 3000;

export async function deliveriesPage(body, { query, onLeave }) {
  const triggers = await allItems("triggers");
  const state = select(STATES, { value: query.get("state") ?? "" });
  const trigger = select([["", "any"], ...triggers.map((t) => [t.id, t.name])],
    { value: query.get("trigger_id") ?? "" });
  const fromTime = input({ placeholder: "2026-03-02T00:00:00Z", value: query.get("from_time") ?? "" });
  const toTime = input({ placeholder: "2026-03-03T00:00:00Z", value: query.get("to_time") ?? "" });
  const list = h("div");
  const filters = form({ "aria-label": "Filter deliveries", class: "filters" },
    h("div", { class: "row" },
      field("State", state, { path: "state" }),
      field("Trigger", trigger, { path: "trigger_id" }),
      field("Made from", fromTime, { path: "from_time" }),
      field("Made until", toTime, { path: "to_time" })),
    h("button", { type: "submit" }, "Show"));
  const names = new Map(triggers.map((t) => [t.id, t.name]));
  let cursor = null;
  const live = h("input", { type: "checkbox", checked: true });
  const load = async (more) => {
    const page = await api("GET", "jobs", { query: { state: state.value, trigger_id: trigger.value,
      from_time: fromTime.value, to_time: toTime.value, cursor: more ? cursor : undefined } });
    cursor = page.next_cursor;
    const shown = table("Deliveries", [
      ["Job", (job) => h("a", { href: `#/deliveries/${job.id}` }, `#${job.id}`)],
      ["Trigger", (job) => names.get(job.trigger_id) ?? job.trigger_id],
      ["Channel", (job) => job.action_type],
      ["State", (job) => h("span", { class: `state ${job.state}` }, job.state)],
      ["Attempts", (job) => `${job.attempts}/${job.max_attempts}`],
      ["Last error", (job) => job.last_error ?? ""],
      ["Made", (job) => time(job.created_at)],
      ["Finished", (job) => time(job.finished_at)],
    ], page.items, { empty: "none match." });
    if (more) list.append(shown);
    else replace(list, shown);
    if (cursor) {
      list.append(h("button", { type: "button", class: "secondary",
        onclick: (event) => {
          live.checked = false; // a refresh would drop the pages shown
          event.target.remove();
          load(true);
        } }, "More"));
    }
  };
  onSubmit(filters, () => load(false));
  // A trigger's dead jobs, all at once (of the time range, if one is given).
  const message = h("div", { "aria-live": "polite" });
  const redeliverDead = h("button", { type: "button", class: "secondary", onclick: async () => {
    if (!trigger.value) {
      replace(message, notice("Choose a trigger first: its dead deliveries are queued again.", "error"));
      return;
    }
    try {
      const done = await api("POST", `triggers/${trigger.value}/jobs/redeliver`, { body: {
        from_time: fromTime.value || undefined, to_time: toTime.value || undefined } });
      replace(message, notice(done.jobs.length
        ? `Queued again: ${done.jobs.length} dead deliveries of ${names.get(trigger.value)}.`
        : `${names.get(trigger.value)} has no dead delivery in that range.`));
      await load(false);
    } catch (error) {
      replace(message, notice(error.message, "error"));
    }
  } }, "Redeliver the trigger's dead deliveries");
  // New deliveries appear as they are made (the first page only, while nothing is focused in
  // the list: a refresh must not take the keyboard's place away).
  const timer = setInterval(() => {
    if (live.checked && !list.contains(document.activeElement)) load(false).catch(() => {});
  }, REFRESH_MS);
  onLeave(() => clearInterval(timer));
  body.append(filters, h("div", { class: "actions" }, redeliverDead), message,
    field("Refresh every few seconds", live), list);
  await load(false);
}

const UNFINISHED = new Set(["queued", "retrying", "running"]);

export async function deliveryPage(body, { onLeave }, jobId) {
  const message = h("div", { "aria-live": "polite" });
  const view = h("div");
  let timer = null;
  onLeave(() => clearTimeout(timer));
  const show = async () => {
    const job = await api("GET", `jobs/${jobId}`);
    // Until it is finished, the job is read again: its attempts appear as they are made.
    clearTimeout(timer);
    if (UNFINISHED.has(job.state)) timer = setTimeout(() => show().catch(() => {}), REFRESH_MS);
    const redeliverable = job.state === "delivered" || job.state === "dead";
    replace(view,
      h("dl", { class: "facts" }, [
        ["State", job.state], ["Channel", job.action_type], ["Trigger", job.trigger_id],
        ["Event", job.event_id ?? "—"], ["Chain", job.chain_id],
        ["Attempts", `${job.attempts} of ${job.max_attempts}`],
        ["Idempotency key", job.idempotency_key], ["Last error", job.last_error ?? "none"],
      ].flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, String(value))])),
      redeliverable ? h("button", { type: "button", onclick: async () => {
        try {
          const done = await api("POST", `jobs/${jobId}/redeliver`);
          replace(message, notice(`Queued again: job ${done.jobs.join(", ")}.`));
          await show();
        } catch (error) {
          replace(message, notice(error.message, "error"));
        }
      } }, "Redeliver") : null,
      section("Payload", json(job.payload)),
      section("Attempts", job.attempts_made.length ? job.attempts_made.map((attempt, index) =>
        h("article", { class: "attempt" },
          h("h3", {}, `Attempt ${index + 1}: ${attempt.status}`),
          h("p", {}, time(attempt.executed_at), ` · ${attempt.duration_ms ?? "?"} ms`,
            attempt.error_message ? ` · ${attempt.error_message}` : ""),
          attempt.response_data?.request ? [h("h4", {}, "Request"), json(attempt.response_data.request)] : null,
          attempt.response_data ? [h("h4", {}, "Response"),
            json(Object.fromEntries(Object.entries(attempt.response_data).filter(([key]) => key !== "request")))] : null))
        : h("p", {}, "Not tried yet.")));
  };
  body.append(h("p", {}, h("a", { href: "#/deliveries" }, "All deliveries")), message, view);
  await show();
}
