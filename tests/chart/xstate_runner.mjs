// Runs random statecharts (tests/chart/random_charts.py) through XState v5, for
// tests/chart/test_differential.py.
//
// Usage: node tests/chart/xstate_runner.mjs <dir with node_modules/xstate> [max microsteps]
// stdin:  one JSON object a line:
//   {"id": ..., "machine": <config>, "events": ["A", ...], "variants": ["<name>", ...]}
// stdout: one JSON object a line, in input order:
//   {"id": ..., "steps": <run>, "variants": {"<name>": <run>, ...}}
// A run is the error message if the machine cannot be created, else a list with one step
// for the initial transition and one per event: {"value", "context", "status"} (plus
// "illegal": the ids of the active state nodes if they are not a legal configuration),
// or {"error": "<message>"} if XState throws or errors (then the run stops).
// "steps" is plain XState; each variant is XState with some behaviours changed (PATCHES),
// which tells a deliberate departure of backstate from a bug.
// Lines are answered as they arrive, so the runner also works interactively.
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const base = path.resolve(process.argv[2] ?? '.cache/xstate');
// XState's `maxIterations`: a macrostep that takes more microsteps throws (otherwise a
// cycle of raised events would hang). backstate's default is 10000 (MAX_MICROSTEPS in
// backstate/chart/_macrostep.py).
const MAX_ITERATIONS = Number(process.argv[3] ?? 10000);

const require = createRequire(path.join(base, 'package.json'));
const entry = require.resolve('xstate');
const dist = path.dirname(entry);

// Source patches to XState's microstep code (the CJS chunk with `microstep`), as
// [original, replacement] pairs; each original must occur exactly once.
const PATCHES = {
  // Keep the active state nodes (`snapshot._nodes`) in document order. XState appends
  // newly entered nodes to the active set, so after a microstep that changes the set,
  // `_nodes` is in entry order; eventless transitions are selected from the atomic nodes
  // in `_nodes` order, which decides which of two conflicting ones wins. A snapshot
  // restored from XState's persisted JSON rebuilds `_nodes` from the state value, so it
  // can pick a different transition than the live snapshot it was persisted from.
  documentOrder: [
    [
      'const nextStateNodes = [...mutStateNodeSet];',
      'const nextStateNodes = [...mutStateNodeSet].sort((a, b) => a.order - b.order);',
    ],
  ],
  // Compute each transition's domain for the entry set from the history as it was before
  // the exit, as for the exit set (XState uses the history recorded during the exit).
  domainBeforeExit: [
    [
      'const filteredTransitions = removeConflictingTransitions(transitions, mutStateNodeSet, historyValue);',
      'const filteredTransitions = removeConflictingTransitions(transitions, mutStateNodeSet, historyValue);\n    domainHistory = historyValue;',
    ],
    [
      'function computeEntrySet(transitions, historyValue, statesForDefaultEntry, statesToEnter) {\n  for (const t of transitions) {\n    const domain = getTransitionDomain(t, historyValue);',
      'let domainHistory;\nfunction computeEntrySet(transitions, historyValue, statesForDefaultEntry, statesToEnter) {\n  for (const t of transitions) {\n    const domain = getTransitionDomain(t, domainHistory ?? historyValue);',
    ],
  ],
};

const VARIANTS = {
  domainBeforeExit: PATCHES.domainBeforeExit,
  documentOrder: PATCHES.documentOrder,
  'documentOrder+domainBeforeExit': [...PATCHES.documentOrder, ...PATCHES.domainBeforeExit],
};

function count(text, part) {
  return text.split(part).length - 1;
}

// A fresh copy of XState, with one chunk's source patched.
function loadXState(patches) {
  for (const key of Object.keys(require.cache)) {
    if (path.dirname(key) === dist) delete require.cache[key];
  }
  if (!patches.length) return require(entry);
  const chunks = fs
    .readdirSync(dist)
    .filter((name) => name.endsWith('.cjs.js') && !name.includes('development'))
    .map((name) => path.join(dist, name))
    .filter((file) => patches.every(([from]) => fs.readFileSync(file, 'utf8').includes(from)));
  if (chunks.length !== 1) {
    throw new Error(`expected one XState chunk to patch, found ${chunks.length}`);
  }
  const [file] = chunks;
  let source = fs.readFileSync(file, 'utf8');
  for (const [from, to] of patches) {
    if (count(source, from) !== 1) throw new Error(`cannot patch XState: ${from}`);
    source = source.replace(from, () => to);
  }
  const mod = new Module(file, null);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(dist);
  mod._compile(source, file);
  mod.loaded = true;
  require.cache[file] = mod;
  return require(entry);
}

const plain = loadXState([]);
const variants = Object.entries(VARIANTS).map(([name, patches]) => [name, loadXState(patches)]);

function implementations({ assign, raise }) {
  return {
    guards: {
      even: ({ context }) => context.n % 2 === 0,
      odd: ({ context }) => context.n % 2 === 1,
      lt3: ({ context }) => context.n < 3,
    },
    actions: {
      inc: assign({ n: ({ context }) => context.n + 1 }),
      rec: () => {},
      raiseB: raise({ type: 'B' }),
    },
  };
}

function message(err) {
  return String(err && err.message ? err.message : err);
}

// Whether the active state nodes form a legal configuration: every node's parent is
// active, a compound node has exactly one active child, a parallel node all its regions.
function isLegal(nodes) {
  const active = new Set(nodes);
  for (const node of active) {
    const kids = Object.values(node.states ?? {}).filter((kid) => kid.type !== 'history');
    if (
      node.type === 'history' ||
      (node.parent && !active.has(node.parent)) ||
      (node.type === 'compound' && kids.filter((kid) => active.has(kid)).length !== 1) ||
      (node.type === 'parallel' && !kids.every((kid) => active.has(kid)))
    ) {
      return false;
    }
  }
  return true;
}

function observe(snapshot) {
  // XState reports an error in the initial transition as an error snapshot (and throws
  // from later ones).
  if (snapshot.status === 'error') {
    return { error: message(snapshot.error) };
  }
  const step = { value: snapshot.value, context: snapshot.context, status: snapshot.status };
  if (!isLegal(snapshot._nodes)) {
    step.illegal = snapshot._nodes.map((node) => node.id);
  }
  return step;
}

function run(xstate, config, events) {
  const { setup, initialTransition, transition } = xstate;
  let machine;
  try {
    machine = setup(implementations(xstate)).createMachine({
      ...config,
      options: { maxIterations: MAX_ITERATIONS },
    });
  } catch (err) {
    return message(err);
  }
  const steps = [];
  let snapshot;
  try {
    [snapshot] = initialTransition(machine);
  } catch (err) {
    steps.push({ error: message(err) });
    return steps;
  }
  steps.push(observe(snapshot));
  if (snapshot.status === 'error') return steps;
  for (const type of events) {
    // An actor delivers nothing once it is done; the pure transition() would.
    if (snapshot.status === 'active') {
      try {
        [snapshot] = transition(machine, snapshot, { type });
      } catch (err) {
        steps.push({ error: message(err) });
        break;
      }
    }
    steps.push(observe(snapshot));
    if (snapshot.status === 'error') break;
  }
  return steps;
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim()) {
    const { id, machine, events, variants: wanted = [] } = JSON.parse(line);
    const reply = { id, steps: run(plain, machine, events), variants: {} };
    for (const [name, xstate] of variants) {
      if (wanted.includes(name)) reply.variants[name] = run(xstate, machine, events);
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}
