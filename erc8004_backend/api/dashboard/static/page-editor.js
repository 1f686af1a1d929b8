// The trigger editor: the trigger's settings, its condition tree (conditions and all / any /
// not groups, any depth), its actions with a form per channel (built from the schema of the
// channel's config, GET channels), and a JSON view of the whole
// body that can be edited too. The API checks everything: its errors are shown at the field
// they name (conditions.any[1].operator, actions[0].config). For a saved trigger: test it
// against history (a backtest), send a test delivery of an action, replay history.
import { api, schema } from "./api.js";
import { h, json, replace, secretOnce, section, table, time, notice } from "./dom.js";
import { field, form, group, input, onSubmit, select } from "./forms.js";

// What a new condition of each type starts as: its field, operator, value and config.
const TYPE_DEFAULTS = {
  agent_id_equals: ["agent_id", "=", "", {}],
  score_threshold: ["score", "<", "50", {}],
  tag_equals: ["tag1", "=", "", {}],
  validator_whitelist: ["validator_address", "IN", "[]", {}],
  event_type_equals: ["event_type", "=", "NewFeedback", {}],
  response_threshold: ["response", "<", "80", {}],
  file_uri_exists: ["file_uri", "IS NOT NULL", "", {}],
  field: ["agent_id", "=", "", {}],
  ema_threshold: ["score", "<", "70", { window_size: 5 }],
  rate_limit: ["feedback_count", ">=", "10", { time_window: "1h" }],
  reputation_threshold: ["reputation", "<", "60", { clients: [] }],
  validation_threshold: ["validation", "<", "80", {}],
  owner_changed: ["owner", "!=", "", {}],
  wallet_changed: ["agent_wallet", "!=", "", {}],
  uri_changed: ["agent_uri", "!=", "", {}],
  silence: ["silence", ">=", "24h", {}],
};
// The config settings of the condition types that have some (docs/triggers.md): [key,
// kind, hint]; kind: number, integer, text, checkbox, json, or a list of choices. Other keys
// stay editable as JSON beside them.
const SCOPES = ["", "agent", "client", "validator", "trigger"];
const EVENT_TYPES = ["", "Registered", "URIUpdated", "MetadataSet", "Transfer", "NewFeedback",
  "FeedbackRevoked", "ResponseAppended", "ValidationRequest", "ValidationResponse"];
const CONDITION_SETTINGS = {
  ema_threshold: [["window_size", "integer", "alpha = 2/(N+1)"], ["alpha", "number", "0 < alpha <= 1 (instead of window_size)"], ["scope", SCOPES]],
  rate_limit: [["time_window", "text", "90s, 15m, 1h, 7d"], ["reset_on_trigger", "checkbox"], ["scope", SCOPES]],
  silence: [["scope", [...SCOPES, "request"]], ["after", EVENT_TYPES, "a period starts only at this event type"]],
  reputation_threshold: [["clients", "json", "a JSON list of addresses: the spec's getSummary"], ["tag1", "text"], ["tag2", "text"],
    ["lens_name", "text", "one of your saved lenses (instead of clients)"], ["lens", "json", "a lens written inline (instead of clients)"]],
  validation_threshold: [["validators", "json", "a JSON list of addresses (empty: any)"], ["tag", "text"]],
  wallet_changed: [["change", ["", "set", "unset", "any"]]],
  uri_changed: [["on", "json", "a JSON list of: services, active, x402, mcp_endpoint"]],
};

const STATEFUL_TYPES = new Set(["ema_threshold", "rate_limit", "reputation_threshold",
  "validation_threshold", "silence"]);

// The settings every channel shares (attempts, backoff, noise control): after the
// channel's own, in a part of their own.
const COMMON_SETTINGS = new Set(["max_attempts", "rate_limit_per_minute", "dedup_seconds",
  "retry_initial_seconds", "retry_max_seconds", "notify_retractions"]);

// A property's schema without its "or null" (pydantic writes optional as anyOf [X, null]).
function settled(schema) {
  const options = (schema.anyOf ?? [schema]).filter((option) => option.type !== "null");
  return options.length === 1 ? { ...schema, ...options[0], anyOf: undefined } : schema;
}

const blankCondition = (type = "score_threshold") => {
  const [fieldName, operator, value, config] = TYPE_DEFAULTS[type] ?? ["", "=", "", {}];
  return { kind: "condition", condition_type: type, field: fieldName, operator, value,
    config: structuredClone(config) };
};

// The API's tree (a list, or {all|any|not}) as the editor's nodes, and back.
function toNode(tree) {
  if (Array.isArray(tree)) return { kind: "list", children: tree.map(toNode) };
  if (tree.all) return { kind: "all", children: tree.all.map(toNode) };
  if (tree.any) return { kind: "any", children: tree.any.map(toNode) };
  if (tree.not) return { kind: "not", children: [toNode(tree.not)] };
  return { kind: "condition", condition_type: tree.condition_type, field: tree.field,
    operator: tree.operator, value: tree.value ?? "", config: tree.config ?? {} };
}

function fromNode(node) {
  switch (node.kind) {
    case "list": return node.children.map(fromNode);
    case "all": return { all: node.children.map(fromNode) };
    case "any": return { any: node.children.map(fromNode) };
    case "not": return { not: node.children[0] ? fromNode(node.children[0]) : {} };
    default: return { condition_type: node.condition_type, field: node.field,
      operator: node.operator, value: node.value, config: node.config };
  }
}

// The API's path of the i-th child of the group at `path`.
function childPath(node, path, index) {
  if (node.kind === "list") return `${path}[${index}]`;
  if (node.kind === "not") return `${path}.not`;
  return `${path}.${node.kind}[${index}]`;
}

const GROUP_KINDS = [["all", "all of these hold"], ["any", "any of these holds"],
  ["not", "this does not hold"]];

function fromTrigger(trigger) {
  return {
    name: trigger.name, description: trigger.description ?? "", chain_id: trigger.chain_id,
    registry: trigger.registry, enabled: trigger.enabled, is_stateful: trigger.is_stateful,
    cooldown_seconds: trigger.cooldown_seconds, failure_threshold: trigger.failure_threshold,
    root: toNode(trigger.conditions),
    actions: trigger.actions.map(({ id, action_type, priority, config }) =>
      ({ id, action_type, priority, config: structuredClone(config) })),
  };
}

function toBody(model) {
  return {
    name: model.name, description: model.description || null, chain_id: model.chain_id,
    registry: model.registry, enabled: model.enabled, is_stateful: model.is_stateful,
    cooldown_seconds: model.cooldown_seconds, failure_threshold: model.failure_threshold,
    conditions: fromNode(model.root),
    actions: model.actions.map(({ id, action_type, priority, config }) =>
      (id ? { id, action_type, priority, config } : { action_type, priority, config })),
  };
}

const NEW_TRIGGER = {
  name: "", description: "", chain_id: 31337, registry: "reputation", enabled: true,
  is_stateful: false, cooldown_seconds: 0, failure_threshold: 10,
  root: { kind: "list", children: [blankCondition()] },
  actions: [{ action_type: "rest", priority: 1,
    config: { url: "https://example.com/hook", method: "POST" } }],
};

// A JSON textarea bound to model[key]: parsed on input; a parse error is shown at it.
function jsonControl(read, write, props = {}) {
  const area = h("textarea", { rows: 3, spellcheck: "false", class: "code", ...props });
  const current = read();
  area.value = current === undefined ? "" : JSON.stringify(current);
  area.addEventListener("input", () => {
    try {
      write(area.value.trim() === "" ? undefined : JSON.parse(area.value));
      area.removeAttribute("aria-invalid");
    } catch {
      area.setAttribute("aria-invalid", "true");
    }
  });
  return area;
}

export async function editorPage(body, { go }, triggerId) {
  const openapi = await schema();
  const schemas = openapi.components.schemas;
  const conditionTypes = schemas.ConditionIn.properties.condition_type.enum;
  const operators = schemas.ConditionIn.properties.operator.enum;
  const channels = await api("GET", "channels");
  const saved = triggerId ? await api("GET", `triggers/${triggerId}`) : null;
  const model = saved ? fromTrigger(saved) : structuredClone(NEW_TRIGGER);

  const result = h("div", { "aria-live": "polite" });
  const jsonView = h("textarea", { rows: 16, spellcheck: "false", class: "code", id: "trigger-json" });
  const editor = h("div");
  const changed = () => { jsonView.value = JSON.stringify(toBody(model), null, 2); };
  const rerender = () => { replace(editor, renderSettings(), renderConditions(), renderActions()); changed(); };

  const bind = (control, read, write) => {
    if (control.type === "checkbox") control.checked = Boolean(read());
    else control.value = read() ?? "";
    control.addEventListener(control.tagName === "SELECT" || control.type === "checkbox" ? "change" : "input", () => {
      write(control.type === "checkbox" ? control.checked
        : control.type === "number" ? (control.value === "" ? null : Number(control.value))
          : control.value);
      changed();
    });
    return control;
  };

  function renderSettings() {
    const prop = (key) => [() => model[key], (value) => { model[key] = value; }];
    return group("Trigger", "",
      field("Name", bind(input(), ...prop("name")), { path: "name" }),
      field("Description", bind(h("textarea", { rows: 2 }), ...prop("description")), { path: "description" }),
      h("div", { class: "row" },
        field("Chain id", bind(input({ type: "number", min: 1 }), ...prop("chain_id")), { path: "chain_id" }),
        field("Registry", bind(select(["identity", "reputation", "validation"]), ...prop("registry")), { path: "registry" }),
        field("Cooldown (seconds)", bind(input({ type: "number", min: 0 }), ...prop("cooldown_seconds")), { path: "cooldown_seconds" }),
        field("Failures before the breaker opens", bind(input({ type: "number", min: 1 }), ...prop("failure_threshold")), { path: "failure_threshold" })),
      h("div", { class: "row" },
        field("Enabled", bind(input({ type: "checkbox" }), ...prop("enabled")), { path: "enabled" }),
        field("Stateful (moving averages, rates, summaries, silences)",
          bind(input({ type: "checkbox" }), ...prop("is_stateful")), { path: "is_stateful" })));
  }

  function renderCondition(node, path, remove) {
    const typeSelect = bind(select(conditionTypes), () => node.condition_type, (value) => {
      const fresh = blankCondition(value);
      Object.assign(node, fresh);
      if (STATEFUL_TYPES.has(value)) model.is_stateful = true;
      rerender();
      editor.querySelector(`[data-field="${CSS.escape(`${path}.condition_type`)}"]`)?.focus();
    });
    return group("Condition", path,
      h("div", { class: "row" },
        field("Condition type", typeSelect, { path: `${path}.condition_type` }),
        field("Field", bind(input(), () => node.field, (v) => { node.field = v; }), { path: `${path}.field` }),
        field("Operator", bind(select(operators), () => node.operator, (v) => { node.operator = v; }), { path: `${path}.operator` }),
        field("Value", bind(input(), () => node.value, (v) => { node.value = v; }), { path: `${path}.value` })),
      conditionSettings(node, path),
      remove ? h("button", { type: "button", class: "secondary", onclick: remove }, "Remove condition") : null);
  }

  // A condition's config: its type's settings as controls, any other key as JSON.
  function conditionSettings(node, path) {
    const settings = CONDITION_SETTINGS[node.condition_type] ?? [];
    const known = new Set(settings.map(([key]) => key));
    const controls = settings.map(([key, kind, hint]) => {
      const read = () => node.config[key];
      const write = (value) => {
        if (value === "" || value === null || value === undefined || value === false) delete node.config[key];
        else node.config[key] = value;
      };
      let control;
      if (Array.isArray(kind)) control = bind(select(kind.map((v) => [v, v || "(default)"])), read, write);
      else if (kind === "checkbox") control = bind(input({ type: "checkbox" }), read, write);
      else if (kind === "json") control = jsonControl(read, (value) => { write(value); changed(); });
      else if (kind === "text") control = bind(input(), read, write);
      else control = bind(input({ type: "number", step: kind === "integer" ? 1 : "any" }), read, write);
      return field(key, control, { path: `${path}.config.${key}`, hint });
    });
    const others = () => Object.fromEntries(Object.entries(node.config).filter(([key]) => !known.has(key)));
    const rest = jsonControl(others, (value) => {
      for (const key of Object.keys(others())) delete node.config[key];
      Object.assign(node.config, value ?? {});
      changed();
    }, { rows: 2 });
    return h("div", { class: "settings" },
      controls.length ? h("div", { class: "row" }, controls) : null,
      field(controls.length ? "Other config (JSON object)" : "Config (JSON object)", rest,
        { path: `${path}.config`, hint: "See the trigger language for each condition type's config." }));
  }

  function renderGroup(node, path, remove, legend) {
    const children = node.children.map((child, index) => {
      const drop = () => { node.children.splice(index, 1); rerender(); };
      return child.kind === "condition"
        ? renderCondition(child, childPath(node, path, index), drop)
        : renderGroup(child, childPath(node, path, index), drop, "Group");
    });
    const kinds = path === "conditions" ? [["list", "all of these hold (a list)"], ...GROUP_KINDS] : GROUP_KINDS;
    const kindSelect = bind(select(kinds), () => node.kind, (value) => {
      node.kind = value;
      if (value === "not") node.children = node.children.slice(0, 1);
      rerender();
    });
    const full = node.kind === "not" && node.children.length >= 1;
    return group(legend, path,
      field(path === "conditions" ? "The trigger fires when" : "This group holds when", kindSelect,
        { path: path === "conditions" ? undefined : `${path}.kind` }),
      h("div", { class: "children" }, children),
      h("div", { class: "actions" },
        full ? null : h("button", { type: "button", class: "secondary",
          onclick: () => { node.children.push(blankCondition()); rerender(); } }, "Add condition"),
        full || node.kind === "list" ? null : h("button", { type: "button", class: "secondary",
          onclick: () => { node.children.push({ kind: "any", children: [blankCondition()] }); rerender(); } }, "Add group"),
        remove ? h("button", { type: "button", class: "secondary", onclick: remove }, "Remove group") : null));
  }

  function renderConditions() {
    return renderGroup(model.root, "conditions", null, "Conditions");
  }

  // An action's form: its channel's settings, from the JSON Schema GET channels gives.
  function renderAction(action, index) {
    const path = `actions[${index}]`;
    const channel = channels.find((c) => c.action_type === action.action_type);
    const schema = channel?.config_schema ?? { properties: {} };
    const required = new Set(schema.required ?? []);
    const templates = new Set(channel?.template_keys ?? []);
    const settingField = ([key, property]) => {
      const spec = settled(property);
      const read = () => action.config[key];
      const write = (value) => {
        if (value === "" || value === null || value === undefined) delete action.config[key];
        else action.config[key] = value;
      };
      let control;
      if (spec.enum) {
        control = bind(select(required.has(key) ? spec.enum : [["", "(default)"], ...spec.enum]), read, write);
      } else if (spec.type === "boolean") {
        control = bind(input({ type: "checkbox" }), read, (value) => write(value || undefined));
      } else if (spec.type === "integer" || spec.type === "number") {
        control = bind(input({ type: "number", min: spec.minimum, max: spec.maximum,
          step: spec.type === "integer" ? 1 : "any" }), read, write);
      } else if (spec.type === "string") {
        control = bind(templates.has(key) && key !== "url" ? h("textarea", { rows: 3 }) : input(), read, write);
      } else {
        control = jsonControl(read, (value) => { write(value); changed(); });
      }
      const kind = spec.type === "string" || spec.enum || spec.type === "boolean"
        || spec.type === "integer" || spec.type === "number" ? "" : " (JSON)";
      const hint = [required.has(key) ? "required" : "",
        templates.has(key) ? "a template: {{agent_id}}, {{score}}, … (see the trigger language)" : "",
        property.description ?? ""].filter(Boolean).join("; ");
      return field(`${key}${kind}`, control, { path: `${path}.config.${key}`, hint: hint || undefined });
    };
    const properties = Object.entries(schema.properties ?? {});
    const own = properties.filter(([key]) => !COMMON_SETTINGS.has(key)).map(settingField);
    const common = properties.filter(([key]) => COMMON_SETTINGS.has(key)).map(settingField);
    const typeSelect = bind(select(channels.map((c) => c.action_type)), () => action.action_type, (value) => {
      action.action_type = value;
      action.config = {};
      rerender();
    });
    const testButton = saved && action.id ? h("button", {
      type: "button", class: "secondary",
      onclick: async () => {
        replace(result, notice("Sending a test delivery…"));
        try {
          const sent = await api("POST", `triggers/${saved.id}/actions/${action.id}/test`);
          replace(result, section("Test delivery",
            notice(`Test delivery: ${sent.status} in ${sent.duration_ms} ms${sent.error ? `: ${sent.error}` : ""}`,
              sent.status === "success" ? "info" : "error"),
            sent.response === null ? null : json(sent.response)));
        } catch (error) {
          replace(result, notice(error.message, "error"));
        }
      },
    }, "Send a test delivery") : null;
    return group(`Action ${index + 1}`, path,
      h("div", { class: "row" },
        field("Channel", typeSelect, { path: `${path}.action_type` }),
        field("Priority", bind(input({ type: "number", min: 1, max: 100 }), () => action.priority, (v) => { action.priority = v; }), { path: `${path}.priority` })),
      group(`${action.action_type} settings`, `${path}.config`, own,
        h("details", { class: "more" }, h("summary", {}, "Attempts, backoff and noise control"), common)),
      h("div", { class: "actions" }, testButton,
        model.actions.length > 1 ? h("button", { type: "button", class: "secondary",
          onclick: () => { model.actions.splice(index, 1); rerender(); } }, "Remove action") : null));
  }

  function renderActions() {
    return group("Actions", "actions", model.actions.map(renderAction),
      h("button", { type: "button", class: "secondary", onclick: () => {
        model.actions.push({ action_type: channels[0].action_type, priority: 1, config: {} });
        rerender();
      } }, "Add action"));
  }

  const applyJson = h("button", { type: "button", class: "secondary", onclick: () => {
    try {
      const parsed = JSON.parse(jsonView.value);
      Object.assign(model, fromTrigger({ ...NEW_TRIGGER, ...parsed, actions: parsed.actions ?? [] }));
      rerender();
      replace(result, notice("The form now shows the JSON."));
    } catch (error) {
      replace(result, notice(`The JSON cannot be read: ${error.message}`, "error"));
    }
  } }, "Use this JSON");

  const editorForm = form({ "aria-label": "Trigger" }, editor,
    h("details", { class: "json-view" }, h("summary", {}, "JSON view"),
      field("The trigger as the API receives it", jsonView), applyJson),
    h("button", { type: "submit" }, saved ? "Save trigger" : "Create trigger"));
  onSubmit(editorForm, async () => {
    const bodyJson = toBody(model);
    const stored = saved
      ? await api("PUT", `triggers/${saved.id}`, { body: bodyJson })
      : await api("POST", "triggers", { body: bodyJson });
    if (!saved) {
      go(`/triggers/${stored.id}`);
      // The new page replaces this one: the secret is shown there, once.
      sessionStorage.setItem("shown-once", JSON.stringify(
        { trigger: stored.id, secret: stored.webhook_secret ?? null }));
      return;
    }
    replace(result, stored.webhook_secret
      ? secretOnce("The trigger is saved. Its webhook secret", stored.webhook_secret)
      : notice("The trigger is saved."));
  });

  rerender();
  const shownOnce = JSON.parse(sessionStorage.getItem("shown-once") ?? "null");
  sessionStorage.removeItem("shown-once");
  if (saved && shownOnce?.trigger === saved.id) {
    result.append(shownOnce.secret ? secretOnce("The trigger is created. Its webhook secret", shownOnce.secret)
      : notice("The trigger is created."));
  }
  body.append(h("p", {}, h("a", { href: "#/triggers" }, "All triggers")), result, editorForm);
  if (saved) body.append(backtestForm(saved), replayForm(saved));
}

function backtestForm(trigger) {
  const fromBlock = input({ type: "number", min: 0 });
  const toBlock = input({ type: "number", min: 0 });
  const fromTime = input({ placeholder: "2026-03-02T00:00:00Z" });
  const toTime = input({ placeholder: "2026-03-03T00:00:00Z" });
  const output = h("div", { "aria-live": "polite" });
  const number = (control) => (control.value === "" ? undefined : Number(control.value));
  const testForm = form({ "aria-label": "Test against history" },
    h("div", { class: "row" },
      field("From block", fromBlock, { path: "from_block" }),
      field("To block", toBlock, { path: "to_block" }),
      field("From time", fromTime, { path: "from_time" }),
      field("To time", toTime, { path: "to_time" })),
    h("button", { type: "submit" }, "Test against history"), output);
  onSubmit(testForm, async () => {
    const ran = await api("POST", `triggers/${trigger.id}/test`, { body: {
      from_block: number(fromBlock), to_block: number(toBlock),
      from_time: fromTime.value || undefined, to_time: toTime.value || undefined } });
    replace(output,
      h("p", {}, `${ran.events_checked} events checked, ${ran.matched} matched, fired ${ran.fired.length} times.`),
      table("Firings", [
        ["Block", (f) => `${f.block_number}:${f.log_index}`],
        ["Time", (f) => time(f.block_time)],
        ["Event", (f) => f.event_type],
        ["Agent", (f) => f.agent_id ?? "—"],
        ["Values", (f) => json(f.computed)],
        ["Messages", (f) => f.messages.map((m) => h("div", {}, `${m.action_type}: `,
          m.text ?? (m.body === null ? "" : JSON.stringify(m.body))))],
      ], ran.fired));
  });
  return section("Test against history", testForm);
}

function replayForm(trigger) {
  const fromBlock = input({ type: "number", min: 0 });
  const fromTime = input({ placeholder: "2026-03-02T00:00:00Z" });
  const list = h("div", { "aria-live": "polite" });
  const refresh = async () => {
    const replays = await api("GET", `triggers/${trigger.id}/replays`);
    replace(list, table("Replays", [
      ["Replay", (r) => `#${r.id}`],
      ["From", (r) => (r.from_block !== null ? `block ${r.from_block}` : time(r.from_time))],
      ["Status", (r) => r.status],
      ["Reached", (r) => (r.cursor_block < 0 ? "—" : `block ${r.cursor_block}`)],
      ["", (r) => (r.status === "pending" || r.status === "running" ? h("button", {
        type: "button", class: "secondary", "aria-label": `Cancel replay ${r.id}`,
        onclick: async () => {
          await api("POST", `triggers/${trigger.id}/replays/${r.id}/cancel`);
          await refresh();
        } }, "Cancel") : "")],
    ], replays, { empty: "none yet." }));
  };
  const replay = form({ "aria-label": "Replay history" },
    h("p", { class: "hint" }, "Queue the trigger's deliveries for the stored events from a block"
      + " or a time on (events that have their delivery already get none)."),
    h("div", { class: "row" },
      field("From block", fromBlock, { path: "from_block" }),
      field("From time", fromTime, { path: "from_time" })),
    h("button", { type: "submit" }, "Replay"));
  onSubmit(replay, async () => {
    await api("POST", `triggers/${trigger.id}/replays`, { body: {
      from_block: fromBlock.value === "" ? undefined : Number(fromBlock.value),
      from_time: fromTime.value || undefined } });
    await refresh();
  });
  refresh().catch((error) => replace(list, notice(error.message, "error")));
  return section("Replay", replay, list);
}
