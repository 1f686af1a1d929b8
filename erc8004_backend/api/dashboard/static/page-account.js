// The account: password change (the session is moved to the new token) and API keys.
import { api } from "./api.js";
import { h, replace, secretOnce, section, table, time, notice } from "./dom.js";
import { field, form, input, onSubmit } from "./forms.js";

export async function accountPage(body, { session }) {
  body.append(h("p", {}, `${session.user.username} · ${session.user.email} · role ${session.user.role}`));
  body.append(await apiKeys(), passwordChange());
}

async function apiKeys() {
  const list = h("div");
  const shown = h("div");
  const refresh = async () => {
    const keys = await api("GET", "me/api-keys");
    replace(list, table("API keys", [
      ["Name", (key) => key.name],
      ["Prefix", (key) => h("code", {}, key.prefix)],
      ["Created", (key) => time(key.created_at)],
      ["Last used", (key) => time(key.last_used_at)],
      ["State", (key) => (key.revoked_at ? ["revoked ", time(key.revoked_at)] : "active")],
      ["", (key) => (key.revoked_at ? "" : h("button", {
        type: "button", class: "secondary", "aria-label": `Revoke the key ${key.name}`,
        onclick: async () => {
          await api("DELETE", `me/api-keys/${key.id}`);
          replace(shown, notice(`The key ${key.name} is revoked.`));
          await refresh();
        },
      }, "Revoke"))],
    ], keys, { empty: "none yet." }));
  };
  const name = input({ name: "key-name", required: true });
  const create = form({ "aria-label": "Create an API key" },
    field("Name of the new key", name, { path: "name", hint: "What it is for (a script, a Grafana panel)." }),
    h("button", { type: "submit" }, "Create key"));
  onSubmit(create, async () => {
    const key = await api("POST", "me/api-keys", { body: { name: name.value } });
    replace(shown, secretOnce(`The API key ${key.name}`, key.key));
    name.value = "";
    await refresh();
  });
  await refresh();
  return section("API keys", create, shown, list);
}

function passwordChange() {
  const old = input({ type: "password", autocomplete: "current-password" });
  const fresh = input({ type: "password", autocomplete: "new-password" });
  const keep = input({ type: "checkbox" });
  const done = h("div");
  const change = form({ "aria-label": "Change the password" },
    field("Current password", old, { path: "old_password" }),
    field("New password", fresh, { path: "new_password",
      hint: "At least 8 characters other than spaces." }),
    field("Keep my API keys working", keep, { path: "keep_api_keys" }),
    h("button", { type: "submit" }, "Change password"));
  onSubmit(change, async () => {
    const changed = await api("POST", "me/password", {
      body: { old_password: old.value, new_password: fresh.value, keep_api_keys: keep.checked },
    });
    // Every earlier token (the session's too) stopped working: the session takes the new one.
    await api("PUT", "auth/session",
      { headers: { Authorization: `Bearer ${changed.access_token}` } });
    old.value = fresh.value = "";
    replace(done, notice(`Password changed; ${changed.api_keys_revoked} API key(s) revoked.`));
  });
  return section("Password", change, done);
}
