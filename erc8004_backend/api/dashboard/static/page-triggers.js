// The user's triggers with their state, and what can be done to each.
import { allItems, api } from "./api.js";
import { h, replace, secretOnce, table, time, notice } from "./dom.js";

export async function triggersPage(body) {
  const message = h("div", { "aria-live": "polite" });
  const list = h("div");
  body.append(h("p", {}, h("a", { href: "#/triggers/new", class: "button" }, "New trigger")),
    message, list);

  const act = (label, trigger, run) => h("button", {
    type: "button", class: "secondary", "aria-label": `${label}: ${trigger.name}`,
    onclick: async () => {
      try {
        await run();
        await refresh();
      } catch (error) {
        replace(message, notice(`${trigger.name}: ${error.message}`, "error"));
      }
    },
  }, label);

  async function refresh() {
    const [triggers, counts] = await Promise.all([allItems("triggers"), api("GET", "jobs/counts")]);
    const byTrigger = new Map(counts.triggers.map((count) => [count.trigger_id, count]));
    replace(list, table("Triggers", [
      ["Name", (t) => h("a", { href: `#/triggers/${t.id}` }, t.name)],
      ["Chain", (t) => `${t.chain_id} · ${t.registry}`],
      ["Enabled", (t) => (t.enabled ? "yes" : "no")],
      ["Circuit breaker", (t) => (t.disabled_reason
        ? `open: ${t.disabled_reason}`
        : `closed (${t.consecutive_failures}/${t.failure_threshold} failures)`)],
      ["Last fired", (t) => time(t.last_fired_at)],
      ["Delivered, 24 h", (t) => String(byTrigger.get(t.id)?.succeeded ?? 0)],
      ["Failed, 24 h", (t) => String(byTrigger.get(t.id)?.failed ?? 0)],
      ["Actions", (t) => h("div", { class: "actions" },
        t.enabled
          ? act("Disable", t, () => api("POST", `triggers/${t.id}/disable`))
          : act("Enable", t, () => api("POST", `triggers/${t.id}/enable`)),
        t.disabled_reason || t.consecutive_failures
          ? act("Reset breaker", t, () => api("POST", `triggers/${t.id}/circuit-breaker/reset`))
          : null,
        act("Rotate webhook secret", t, async () => {
          const rotated = await api("POST", `triggers/${t.id}/webhook-secret`);
          replace(message, secretOnce(`The new webhook secret of ${t.name}`, rotated.webhook_secret));
        }),
        h("a", { href: `#/deliveries?trigger_id=${t.id}`, class: "button secondary",
          "aria-label": `Deliveries of ${t.name}` }, "Deliveries"))],
    ], triggers, { empty: "none yet: make one with New trigger." }));
  }
  await refresh();
}
