// Agents: search and list; an agent's page with its profile, services, feedback,
// validations, identity history and reputation (the spec's getSummary over a client list, a lens's score with
// its explanation, and the distribution and trend of the feedback it counted, as charts).
import { api } from "./api.js";
import { externalLink, h, json, replace, section, table, time, notice } from "./dom.js";
import { field, form, input, onSubmit, select } from "./forms.js";

const short = (address) => (address ? `${address.slice(0, 8)}…${address.slice(-4)}` : "—");

export async function agentsPage(body, { query }) {
  const text = input({ type: "search", value: query.get("text") ?? "" });
  const chain = input({ type: "number", min: 1, value: query.get("chain_id") ?? "" });
  const owner = input({ value: query.get("owner") ?? "", placeholder: "0x…" });
  const sort = select([["newest", "newest"], ["last_activity", "last activity"],
    ["feedback_count", "most feedback"]], { value: query.get("sort") ?? "newest" });
  const mcp = select([["", "any"], ["true", "yes"], ["false", "no"]]);
  const list = h("div");
  const search = form({ "aria-label": "Search agents", role: "search", class: "filters" },
    h("div", { class: "row" },
      field("Name or description", text, { path: "text" }),
      field("Chain id", chain, { path: "chain_id" }),
      field("Owner", owner, { path: "owner" }),
      field("Has an MCP endpoint", mcp, { path: "has_mcp" }),
      field("Sort by", sort, { path: "sort" })),
    h("button", { type: "submit" }, "Search"));
  onSubmit(search, async () => {
    const page = await api("GET", "agents", { query: { text: text.value, chain_id: chain.value,
      owner: owner.value, has_mcp: mcp.value, sort: sort.value, limit: 50 } });
    replace(list, table("Agents", [
      ["Agent", (a) => h("a", { href: `#/agents/${a.chain_id}/${a.agent_id}` },
        `${a.chain_id} / ${a.agent_id}`)],
      ["Name", (a) => a.name ?? "(no name)"],
      ["Owner", (a) => h("code", { title: a.owner ?? "" }, short(a.owner))],
      ["Feedback", (a) => String(a.feedback_count)],
      ["Clients", (a) => String(a.client_count)],
      ["MCP", (a) => (a.mcp_endpoint ? "yes" : "no")],
      ["Last activity", (a) => time(a.last_at)],
    ], page.items, { empty: "none match." }));
  });
  body.append(search, list);
  search.requestSubmit();
}

export async function agentPage(body, context, chainId, agentId) {
  const base = `agents/${chainId}/${agentId}`;
  const [profile, feedback, validations, history] = await Promise.all([
    api("GET", base),
    api("GET", `${base}/feedback`, { query: { include_revoked: "true", limit: 100 } }),
    api("GET", `${base}/validations`, { query: { limit: 100 } }),
    api("GET", `${base}/history`, { query: { limit: 100 } }),
  ]);
  const registration = profile.registration;
  document.querySelector("main h1").textContent =
    `Agent ${chainId} / ${agentId}${registration.name ? `: ${registration.name}` : ""}`;
  body.append(
    h("p", {}, h("a", { href: "#/agents" }, "All agents")),
    section("Profile", h("dl", { class: "facts" }, [
      ["Name", registration.name ?? "(none)"],
      ["Description", registration.description ?? "(none)"],
      ["Owner", profile.owner ?? "—"],
      ["Wallet", profile.agent_wallet ?? "—"],
      ["URI", externalLink(profile.agent_uri) || "—"],
      ["Registration file", `${registration.status ?? "not fetched"}${registration.error ? `: ${registration.error}` : ""}`],
      ["Active", registration.active === null ? "—" : String(registration.active)],
      ["Supported trust", registration.supported_trust.join(", ") || "—"],
      ["Registered", time(profile.registered_at)],
      ["Feedback", `${profile.stats.feedback_count} (${profile.stats.revoked_count} revoked) from ${profile.stats.client_count} clients`],
      ["Validations", String(profile.stats.validation_count)],
    ].flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]))),
    section("Services", table("Services", [
      ["Name", (s) => String(s.name ?? "")],
      ["Endpoint", (s) => externalLink(String(s.endpoint ?? ""))],
      ["Other", (s) => JSON.stringify(Object.fromEntries(Object.entries(s)
        .filter(([key]) => key !== "name" && key !== "endpoint")))],
    ], registration.services, { empty: "none listed." }),
    Object.keys(profile.metadata).length ? [h("h3", {}, "On-chain metadata"), json(profile.metadata)] : null),
    reputation(base, feedback.items),
    section("Feedback", table("Feedback", [
      ["Client", (f) => h("code", { title: f.client_address }, short(f.client_address))],
      ["#", (f) => String(f.feedback_index)],
      ["Score", (f) => String(f.score)],
      ["Tags", (f) => [f.tag1, f.tag2].filter(Boolean).join(", ")],
      ["File", (f) => externalLink(f.feedback_uri ?? "")],
      ["When", (f) => time(f.block_time)],
      ["Revoked", (f) => (f.revoked ? "yes" : "no")],
      ["Responses", (f) => String(f.response_count)],
    ], feedback.items, { empty: "none yet." })),
    section("Validations",
      h("p", {}, `getSummary: ${validations.summary.count} counted, average response ${validations.summary.average_response ?? "—"}.`),
      table("Validations", [
        ["Validator", (v) => h("code", { title: v.validator_address }, short(v.validator_address))],
        ["Requested", (v) => time(v.requested_at)],
        ["Response", (v) => (v.response === null ? "pending" : String(v.response))],
        ["Tag", (v) => v.response_tag ?? ""],
        ["Request", (v) => externalLink(v.request_uri ?? "")],
      ], validations.items, { empty: "none yet." })),
    section("Identity history", table("Identity changes", [
      ["When", (c) => time(c.block_time)],
      ["Block", (c) => String(c.block_number)],
      ["Change", (c) => c.change],
      ["To", (c) => (c.change === "uri" || c.change === "registered"
        ? externalLink(c.agent_uri ?? "")
        : c.change === "wallet" ? (c.agent_wallet ?? "cleared") : (c.owner ?? ""))],
      ["From / by", (c) => c.previous_owner ?? c.updated_by ?? ""],
    ], history.items, { empty: "none." })));
}

function reputation(base, feedback) {
  const clients = [...new Set(feedback.map((f) => f.client_address))];
  const clientList = h("textarea", { rows: 3, class: "code" });
  clientList.value = clients.join("\n");
  const tag1 = input();
  const tag2 = input();
  const lens = h("textarea", { rows: 2, class: "code" });
  lens.value = "{}";
  const trend = input({ value: "7d" });
  const output = h("div", { "aria-live": "polite" });
  const ask = form({ "aria-label": "Reputation" },
    field("Clients (one address a line)", clientList, { path: "clients",
      hint: "The spec's getSummary averages these clients' feedback; the list starts with every client of the agent." }),
    h("div", { class: "row" },
      field("Tag 1", tag1, { path: "tag1" }),
      field("Tag 2", tag2, { path: "tag2" }),
      field("Trend buckets", trend, { path: "trend", hint: "A duration: 1d, 12h." })),
    field("Lens (a saved lens's name, or a JSON object)", lens, { path: "lens",
      hint: "{} counts every feedback once; see the lenses in the README." }),
    h("button", { type: "submit" }, "Show reputation"), output);
  onSubmit(ask, async () => {
    const list = clientList.value.split(/[\s,]+/).filter(Boolean);
    const answer = await api("GET", `${base}/reputation`, { query: {
      clients: list, tag1: tag1.value, tag2: tag2.value,
      lens: lens.value.trim(), trend: trend.value } });
    replace(output, summaryView(answer));
  });
  queueMicrotask(() => ask.requestSubmit());
  return section("Reputation", ask);
}

function summaryView(answer) {
  const parts = [];
  if (answer.spec) {
    parts.push(h("h3", {}, "Spec summary (getSummary)"), h("dl", { class: "facts", id: "spec-summary" },
      [["Count", answer.spec.count], ["Value", answer.spec.value], ["Decimals", answer.spec.decimals],
        ["Value (decimal)", answer.spec.value_decimal]]
        .flatMap(([term, value]) => [h("dt", {}, term), h("dd", { dataset: { key: term } }, String(value))])));
  }
  const lens = answer.lens;
  if (lens) {
    const explain = lens.explain;
    parts.push(h("h3", {}, `Lens${lens.name ? ` ${lens.name}` : ""}: score ${lens.score ?? "— (nothing counted)"}`),
      h("p", {}, `Counted ${explain.counted} of ${explain.total} feedback from ${explain.clients_counted} clients; left out: `
        + (Object.entries(explain.excluded).map(([why, count]) => `${count} ${why}`).join(", ") || "none") + "."),
      table("Top clients", [
        ["Client", (c) => h("code", { title: c.client }, short(c.client))],
        ["Counted", (c) => String(c.feedback_counted)],
        ["Weight", (c) => String(c.weight)],
        ["Share", (c) => String(c.share)],
        ["Value", (c) => String(c.value)],
        ["Contribution", (c) => String(c.contribution)],
      ], explain.top_clients, { empty: "none counted." }),
      chart("Distribution of the counted scores", "bar",
        lens.distribution.map((b) => `${b.low ?? "…"}–${b.high ?? "…"}`),
        lens.distribution.map((b) => b.count), "feedback"),
      chart(`Trend (average per ${lens.trend_width})`, "line",
        lens.trend.map((b) => new Date(b.start).toLocaleDateString()),
        lens.trend.map((b) => Number(b.average)), "average score"));
  }
  return parts;
}

// A Chart.js chart with a text alternative: the same numbers as a list for screen readers.
function chart(title, type, labels, values, label) {
  const canvas = h("canvas", { role: "img", "aria-label": `${title}: ${labels.map((l, i) => `${l}: ${values[i]}`).join("; ") || "no data"}` });
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title), h("div", { class: "chart-box" }, canvas));
  if (window.Chart && labels.length) {
    requestAnimationFrame(() => new window.Chart(canvas, {
      type, data: { labels, datasets: [{ label, data: values, backgroundColor: "#1f4e79", borderColor: "#1f4e79" }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false } } },
    }));
  } else if (!labels.length) {
    figure.append(h("p", {}, "No data."));
  }
  return figure;
}
