// Compiles the devnet registry contracts with the npm `solc` package (offline) and writes
// erc8004_backend/devnet/artifacts/<Name>.json: {contractName, sourcePath, sourceSha256,
// compiler, settings, abi, bytecode}.
//
//   npm run build:contracts            rebuild the artifacts
//   node contracts/build.mjs --check   exit 1 when an artifact differs from a fresh build
//
// The output is deterministic (same source, compiler and settings: same bytes), so the
// artifacts are committed beside their sources and a test compares the sources' sha256.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const CONTRACTS = ["IdentityRegistry", "ReputationRegistry", "ValidationRegistry"];
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const outDir = join(root, "erc8004_backend", "devnet", "artifacts");
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  viaIR: true,
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};

function build() {
  const sources = {};
  for (const name of CONTRACTS) {
    sources[`${name}.sol`] = { content: readFileSync(join(here, `${name}.sol`), "utf8") };
  }
  const output = JSON.parse(
    solc.compile(JSON.stringify({ language: "Solidity", sources, settings })),
  );
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const problem of output.errors ?? []) {
    process.stderr.write(problem.formattedMessage ?? `${problem.message}\n`);
  }
  if (errors.length > 0) {
    throw new Error(`solc reported ${errors.length} error(s)`);
  }
  const { outputSelection, ...recorded } = settings;
  const artifacts = {};
  for (const name of CONTRACTS) {
    const file = `${name}.sol`;
    const compiled = output.contracts?.[file]?.[name];
    if (!compiled) {
      throw new Error(`solc produced no contract ${name} in ${file}`);
    }
    const artifact = {
      contractName: name,
      sourcePath: relative(root, join(here, file)),
      sourceSha256: createHash("sha256").update(readFileSync(join(here, file))).digest("hex"),
      compiler: `solc ${solc.version()}`,
      settings: recorded,
      abi: compiled.abi,
      bytecode: `0x${compiled.evm.bytecode.object}`,
    };
    artifacts[name] = `${JSON.stringify(artifact, null, 2)}\n`;
  }
  return artifacts;
}

const check = process.argv.includes("--check");
const artifacts = build();
let stale = 0;
mkdirSync(outDir, { recursive: true });
for (const [name, text] of Object.entries(artifacts)) {
  const path = join(outDir, `${name}.json`);
  const current = existsSync(path) ? readFileSync(path, "utf8") : null;
  if (check) {
    if (current !== text) {
      stale += 1;
      console.error(`${relative(root, path)} is out of date: run npm run build:contracts`);
    }
    continue;
  }
  if (current !== text) {
    writeFileSync(path, text);
  }
  const size = (JSON.parse(text).bytecode.length - 2) / 2;
  console.log(`${relative(root, path)}: ${size} bytes of init code${current === text ? " (unchanged)" : ""}`);
}
process.exit(stale > 0 ? 1 : 0);
