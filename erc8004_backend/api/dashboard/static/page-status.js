// Per chain: indexed, confirmed and head blocks, the lag and the last error.
import { api } from "./api.js";
import { h, table, time, notice } from "./dom.js";

export async function statusPage(body) {
  const [chains, ready] = await Promise.all([
    api("GET", "indexer/status"),
    api("GET", "ready").catch((error) => ({ status: `not ready: ${error.message}` })),
  ]);
  body.append(h("p", {}, `API: ${ready.status}`));
  if (!chains.length) {
    body.append(notice("No chain indexed yet: start an indexer (erc8004 run or erc8004 indexer)."));
    return;
  }
  body.append(table("Chains", [
    ["Chain", (chain) => String(chain.chain_id)],
    ["Indexed block", (chain) => String(chain.block_number)],
    ["Confirmed block", (chain) => String(chain.confirmed_block_number ?? "—")],
    ["Head block", (chain) => String(chain.head_block_number ?? "—")],
    ["Lag (blocks)", (chain) => String(chain.head_lag ?? "—")],
    ["Last error", (chain) => (chain.last_error ? [chain.last_error, " (", time(chain.last_error_at), ")"] : "none")],
    ["Updated", (chain) => time(chain.updated_at)],
  ], chains));
}
