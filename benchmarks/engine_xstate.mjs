// XState v5 side of benchmarks/engine.py. Not meant to be run by hand (but it can be):
//
//   node benchmarks/engine_xstate.mjs < spec.json
//
// stdin: {"configs": {name: machineConfig}, "event": {"type": "T"},
//         "target_s": 1.0, "repeats": 5}
// stdout: one JSON object with events/s per variant ("pure": transition(machine, snapshot,
// event); "actor": createActor(machine).send(event)), machines constructed per second,
// bytes per persisted snapshot and a correctness check per machine and variant.
//
// xstate is resolved from benchmarks/.node/ (engine.py runs `npm install --prefix
// benchmarks/.node xstate@5` when it is missing).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, ".node", "package.json"));
const xstate = require("xstate");
const { assign, createActor, initialTransition, setup, transition } = xstate;
const xstateVersion = require("xstate/package.json").version;

const spec = JSON.parse(readFileSync(0, "utf8"));
const { configs, event, target_s: targetS, repeats } = spec;

let hits = 0; // the custom entry/exit action: a counter, like the Python peers
const implementations = {
  actions: {
    hit: () => {
      hits += 1;
    },
    inc: assign({ count: ({ context }) => context.count + 1 }),
  },
};

const build = (config) => setup(implementations).createMachine(config);

// Same method as engine.py: double n until one run takes >= 10% of the target (this is the
// warm-up), scale n to the target, then keep the best of `repeats` timed runs.
function measure(run) {
  let n = 64;
  let dt = 0;
  for (;;) {
    const t0 = performance.now();
    run(n);
    dt = (performance.now() - t0) / 1000;
    if (dt >= targetS * 0.1) break;
    n *= 2;
  }
  n = Math.max(1, Math.round((n * targetS) / Math.max(dt, 1e-9)));
  let best = 0;
  for (let i = 0; i < repeats; i += 1) {
    const t0 = performance.now();
    run(n);
    const secs = (performance.now() - t0) / 1000;
    best = Math.max(best, n / secs);
  }
  return best;
}

// Active leaf state names (sorted) of a state value, and the deep machine's counter.
function leaves(value) {
  if (typeof value === "string") return [value];
  return Object.values(value).flatMap(leaves).sort();
}

function summary(snapshot) {
  return { leaves: leaves(snapshot.value), count: snapshot.context?.count ?? null };
}

const variants = {
  pure(machine) {
    let [snapshot] = initialTransition(machine);
    let sent = 0;
    return {
      run(n) {
        let s = snapshot;
        for (let i = 0; i < n; i += 1) {
          [s] = transition(machine, s, event);
        }
        snapshot = s;
        sent += n;
      },
      summary: () => ({ ...summary(snapshot), sent }),
    };
  },
  actor(machine) {
    const actor = createActor(machine).start();
    let sent = 0;
    return {
      run(n) {
        for (let i = 0; i < n; i += 1) {
          actor.send(event);
        }
        sent += n;
      },
      summary: () => ({ ...summary(actor.getSnapshot()), sent }),
    };
  },
};

const out = { version: xstateVersion, eps: {}, checks: {}, bytes: {}, machines_per_s: null };
for (const [variant, make] of Object.entries(variants)) {
  out.eps[variant] = {};
  out.checks[variant] = {};
  for (const [name, config] of Object.entries(configs)) {
    const runner = make(build(config));
    out.eps[variant][name] = measure(runner.run);
    out.checks[variant][name] = runner.summary();
  }
}
for (const [name, config] of Object.entries(configs)) {
  const machine = build(config);
  const [s0] = initialTransition(machine);
  const [s1] = transition(machine, s0, event);
  out.bytes[name] = JSON.stringify(machine.getPersistedSnapshot(s1)).length;
}
out.machines_per_s = measure((n) => {
  for (let i = 0; i < n; i += 1) build(configs.deep);
});
out.hits = hits;
process.stdout.write(`${JSON.stringify(out)}\n`);
