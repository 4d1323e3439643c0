// Drives a State Backed API with the published @statebacked/client, unchanged.
//
// Usage: node client_driver.mjs '<scenario JSON>'   (or the scenario on stdin)
//
// Scenario: {
//   apiHost, clientDir?,                 // clientDir: where scripts/fetch-suites installed it
//   clients: {name: {config, opts?}},    // config: the client's tokenConfig, e.g. {token},
//                                        //   {identityProviderToken, orgId, tokenProviderService},
//                                        //   {anonymous: {orgId, sessionId?}}
//   steps: [{client?: name, op, ...}],   // client defaults to "default"
//   failFast?: bool                      // after a failed step, skip the rest
// }
// Ops:
//   {op: "call", path: "machineInstances.create", args: [...]}  any client method;
//                                               an arg {"$date": ISO} is passed as a Date,
//                                               {"$gzip": text} as gzipped bytes
//   {op: "subscribe", id, machine, instance}    machineInstances.subscribe into a buffer
//   {op: "unsubscribe", id}
//   {op: "actor", id, machine, instance, create?}  get(OrCreate)Actor + actor.subscribe
//   {op: "actorSend", id, event}                actor.send (fire and forget)
//   {op: "wait", id, count, timeoutMs?}         until the buffer holds `count` entries
//   {op: "wait", id, errors, timeoutMs?}        until it holds `errors` error entries
//   {op: "sleep", ms}
//   {op: "watchLogs", from, filter?, count, extraMs?, timeoutMs?}
//                                               logs.watch(from, filter): the entries it
//                                               yields until `count` came and `extraMs`
//                                               more passed (then it is aborted)
// Prints one JSON line per step: {step, ok: true, value} or {step, ok: false, error}.
// A buffer entry is {update: State} or {error}; `wait` returns the whole buffer.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));

function readScenario() {
  const text = process.argv[2] ?? readFileSync(0, "utf8");
  // {"$date": ISO} stands for a Date (logs.retrieve takes Dates), {"$gzip": text} for
  // the gzipped bytes of text (machineVersions.create's gzippedCode).
  return JSON.parse(text, (_, v) => {
    if (v && typeof v === "object" && "$date" in v) return new Date(v.$date);
    if (v && typeof v === "object" && "$gzip" in v) return new Uint8Array(gzipSync(v.$gzip));
    return v;
  });
}

async function loadClient(clientDir) {
  const pkgDir = join(clientDir, "node_modules", "@statebacked", "client");
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  const entry = pkg.exports?.["."]?.default?.import ?? pkg.module ?? pkg.main;
  const client = await import(pathToFileURL(join(pkgDir, entry)).href);
  // Node 20 has no global WebSocket; the client's own undici dependency has one.
  let WebSocket = globalThis.WebSocket;
  if (!WebSocket) {
    const require = createRequire(join(pkgDir, "package.json"));
    WebSocket = require("undici").WebSocket;
  }
  return { ...client, WebSocket, version: pkg.version };
}

function describeError(err, errors) {
  if (!(err instanceof Error)) {
    return { name: typeof err, message: String(err), classes: [] };
  }
  const classes = Object.entries(errors)
    .filter(([, cls]) => typeof cls === "function" && err instanceof cls)
    .map(([name]) => name);
  const out = { name: err.name, message: err.message, classes };
  if (err.status !== undefined) out.status = err.status;
  if (err.code !== undefined) out.code = err.code;
  if (err.cause !== undefined) out.cause = describeError(err.cause, errors);
  if (err.event !== undefined) out.event = err.event;
  return out;
}

function snapshot(actorState) {
  return {
    value: actorState.value,
    context: actorState.context,
    done: actorState.done,
    tags: [...actorState.tags],
    strings: actorState.toStrings(),
  };
}

async function main() {
  const scenario = readScenario();
  const lib = await loadClient(
    scenario.clientDir ?? join(here, "..", "..", ".cache", "statebacked-client"),
  );
  const { StateBackedClient, errors } = lib;

  // Clients are made on first use: the constructor fetches its token at once, and an
  // exchange must not run before the steps that configure it.
  const clients = {};
  const clientFor = (name) => {
    if (!clients[name]) {
      const spec = scenario.clients[name];
      let config = spec.config;
      if (config.anonymous?.sessionId) {
        const { sessionId, ...anonymous } = config.anonymous;
        config = { anonymous: { ...anonymous, getSessionId: () => sessionId } };
      }
      clients[name] = new StateBackedClient(config, {
        apiHost: scenario.apiHost,
        WebSocket: lib.WebSocket,
        ...(spec.opts ?? {}),
      });
    }
    return clients[name];
  };

  const buffers = {};
  const unsubscribers = {};
  const actors = {};
  const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");

  let failed = false;
  for (const [index, step] of scenario.steps.entries()) {
    if (failed && scenario.failFast) {
      emit({ step: index, ok: false, error: { name: "Skipped", message: "failFast", classes: [] } });
      continue;
    }
    try {
      const client = step.op === "call" || step.op === "subscribe" || step.op === "actor"
        ? clientFor(step.client ?? "default")
        : undefined;
      let value;
      switch (step.op) {
        case "call": {
          const parts = step.path.split(".");
          const fn = parts.reduce((obj, key) => obj[key], client);
          const owner = parts.slice(0, -1).reduce((obj, key) => obj[key], client);
          value = await fn.apply(owner, step.args ?? []);
          break;
        }
        case "subscribe": {
          const buffer = (buffers[step.id] = []);
          unsubscribers[step.id] = client.machineInstances.subscribe(
            step.machine,
            step.instance,
            (state) => buffer.push({ update: state }),
            (err) => buffer.push({ error: describeError(err, errors) }),
          );
          break;
        }
        case "unsubscribe": {
          unsubscribers[step.id]();
          delete unsubscribers[step.id];
          break;
        }
        case "actor": {
          const buffer = (buffers[step.id] = []);
          const actor = step.create
            ? await client.machineInstances.getOrCreateActor(step.machine, step.instance, step.create)
            : await client.machineInstances.getActor(step.machine, step.instance);
          actors[step.id] = actor;
          const sub = actor.subscribe({
            next: (state) => buffer.push({ update: snapshot(state) }),
            error: (err) => buffer.push({ error: describeError(err, errors) }),
          });
          unsubscribers[step.id] = () => sub.unsubscribe();
          value = { id: actor.id, snapshot: snapshot(actor.getSnapshot()) };
          break;
        }
        case "actorSend": {
          actors[step.id].send(step.event);
          value = { inFlightEvents: actors[step.id].inFlightEvents.length };
          break;
        }
        case "wait": {
          const buffer = buffers[step.id];
          const deadline = Date.now() + (step.timeoutMs ?? 5000);
          const have = () => (step.errors ? buffer.filter((e) => e.error).length : buffer.length);
          const want = step.errors ?? step.count;
          while (have() < want && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          value = [...buffer];
          if (have() < want) {
            throw new Error(`timed out with ${have()} of ${want} entries`);
          }
          break;
        }
        case "watchLogs": {
          const controller = new AbortController();
          const entries = [];
          const deadline = Date.now() + (step.timeoutMs ?? 10000);
          let enough;
          const stop = setTimeout(() => controller.abort(), step.timeoutMs ?? 10000);
          const iterator = clientFor(step.client ?? "default").logs.watch(
            new Date(step.from),
            step.filter,
            controller.signal,
          );
          for await (const entry of iterator) {
            entries.push(entry);
            if (entries.length >= step.count && enough === undefined) {
              enough = setTimeout(() => controller.abort(), step.extraMs ?? 0);
            }
            if (Date.now() > deadline || entries.length > step.count * 2) break;
          }
          clearTimeout(stop);
          clearTimeout(enough);
          value = entries;
          break;
        }
        case "sleep": {
          await new Promise((resolve) => setTimeout(resolve, step.ms));
          break;
        }
        default:
          throw new Error(`unknown op ${step.op}`);
      }
      emit({ step: index, ok: true, value: value ?? null });
    } catch (err) {
      const line = { step: index, ok: false, error: describeError(err, errors) };
      if (step.op === "wait") line.value = [...(buffers[step.id] ?? [])];
      emit(line);
      failed = true;
    }
  }
  for (const unsubscribe of Object.values(unsubscribers)) unsubscribe();
  // Closed sockets reconnect at once (the client has no backoff): leave now.
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`driver failed: ${err?.stack ?? err}\n`);
  process.exit(2);
});
