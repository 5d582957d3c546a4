/**
 * The exported charts contain every state and every transition of the machine definitions.
 * The expected sets are derived here from the raw machine config (`machine.config`), not from the
 * resolved StateNode tree src/chart.ts walks, so a transition the chart drops (as
 * xstate/graph's toDirectedGraph drops `always`) fails the test.
 */
import test from 'ava';
import type { AnyStateMachine } from 'xstate';
import { machines } from '../machines/index.ts';
import { raftMachine } from '../machines/raft.ts';
import { activeStates, chartModel, exportChart, toJson, toMermaid, toSvg, type ChartModel } from '../src/chart.ts';

interface Expected {
  states: string[];
  /** `source|event|target,target|guard` per transition, as a sorted multiset. */
  transitions: string[];
}

type Cfg = Record<string, unknown>;

/** Reads the machine's own config: states by path, transitions from `on`, `always`, `after`, invoke onDone/onError. */
function fromConfig(machine: AnyStateMachine): Expected {
  const root = machine.config as Cfg;
  const rootId = (root.id as string | undefined) ?? '(machine)';
  const states: string[] = [];
  const transitions: string[] = [];
  const byId = new Map<string, string>();
  // First pass: ids (a state may declare its own `id`, targeted as '#id').
  const collect = (cfg: Cfg, path: string) => {
    for (const [key, child] of Object.entries((cfg.states ?? {}) as Record<string, Cfg>)) {
      const id = (child.id as string | undefined) ?? `${path}.${key}`;
      byId.set(id, id);
      collect(child, id);
    }
  };
  collect(root, rootId);
  const guardOf = (g: unknown) => (g === undefined ? '' : typeof g === 'string' ? g : (g as { type?: string }).type ?? (g as { name?: string }).name ?? '?');
  const resolve = (target: string, sourceId: string, parentId: string | null): string => {
    if (target.startsWith('#')) return target.slice(1);
    if (target.startsWith('.')) return `${sourceId}${target}`;
    return `${parentId}.${target}`;
  };
  const add = (sourceId: string, parentId: string | null, event: string, raw: unknown) => {
    const list = Array.isArray(raw) ? raw : [raw];
    for (const t of list) {
      const obj = (typeof t === 'string' ? { target: t } : t) as { target?: string | string[]; guard?: unknown };
      const targets = obj.target === undefined ? [] : (Array.isArray(obj.target) ? obj.target : [obj.target]).map((x) => resolve(x, sourceId, parentId));
      transitions.push(`${sourceId}|${event}|${targets.join(',')}|${guardOf(obj.guard)}`);
    }
  };
  const visit = (cfg: Cfg, id: string, parentId: string | null) => {
    for (const [event, raw] of Object.entries((cfg.on ?? {}) as Record<string, unknown>)) add(id, parentId, event, raw);
    if (cfg.always) add(id, parentId, '', cfg.always);
    for (const [delay, raw] of Object.entries((cfg.after ?? {}) as Record<string, unknown>)) add(id, parentId, `after ${/^\d+$/.test(delay) ? `${delay}ms` : delay}`, raw);
    const invokes = cfg.invoke === undefined ? [] : Array.isArray(cfg.invoke) ? cfg.invoke : [cfg.invoke];
    (invokes as Cfg[]).forEach((inv, i) => {
      const invId = (inv.id as string | undefined) ?? `${i}.${id}`;
      if (inv.onDone) add(id, parentId, `done: ${invId}`, inv.onDone);
      if (inv.onError) add(id, parentId, `error: ${invId}`, inv.onError);
    });
    if (cfg.onDone) add(id, parentId, 'done', cfg.onDone);
    for (const [key, child] of Object.entries((cfg.states ?? {}) as Record<string, Cfg>)) {
      const childId = (child.id as string | undefined) ?? `${id}.${key}`;
      states.push(childId);
      visit(child, childId, id);
    }
  };
  visit(root, rootId, null);
  return { states: states.sort(), transitions: transitions.sort() };
}

const keysOf = (m: ChartModel) => m.transitions.map((t) => `${t.source}|${t.kind === 'always' ? '' : t.event}|${t.targets.join(',')}|${t.guard ?? ''}`).sort();

test('the registry holds raft, outbox, monitor and note-sync', (t) => {
  const names = machines.map((m) => m.name);
  t.true(names.includes('raft'));
  t.true(names.includes('outbox'));
  t.true(names.includes('monitor'));
  t.true(names.includes('note-sync'));
  t.is(new Set(names).size, names.length, 'machine names are unique');
});

for (const { name, machine } of machines) {
  test(`chart model of '${name}' has exactly the states and transitions of its config`, (t) => {
    const expected = fromConfig(machine);
    const model = chartModel(machine);
    t.true(expected.states.length > 0, 'config has states');
    t.true(expected.transitions.length > 0, 'config has transitions');
    t.deepEqual(model.states.map((s) => s.id).sort(), expected.states);
    t.deepEqual(keysOf(model), expected.transitions);
  });
}

test('raft: the known roles and transitions are there (cannot pass vacuously)', (t) => {
  const expected = fromConfig(raftMachine);
  const model = chartModel(raftMachine);
  for (const role of ['follower', 'preCandidate', 'candidate', 'leader']) {
    t.true(expected.states.includes(`raft.${role}`), `config has ${role}`);
    t.true(model.states.some((s) => s.id === `raft.${role}` && s.key === role), `chart has ${role}`);
  }
  t.is(model.initial, 'raft.follower');
  const has = (source: string, event: string, target: string, guard: string) =>
    model.transitions.some((x) => x.source === `raft.${source}` && x.event === event && x.targets.join() === `raft.${target}` && x.guard === guard);
  t.true(has('follower', 'ELECTION_TIMEOUT', 'preCandidate', 'canCampaign'));
  t.true(has('follower', 'MSG', 'candidate', 'timeoutNow'));
  t.true(has('preCandidate', '', 'candidate', 'won'), 'always [won] (dropped by xstate/graph) is in the chart');
  t.true(has('candidate', '', 'leader', 'won'));
  t.true(has('leader', 'CHECK_QUORUM', 'follower', 'quorumLost'));
  t.true(has('leader', '', 'follower', 'removedFromConf'));
  const pre = model.transitions.find((x) => x.source === 'raft.preCandidate' && x.event === 'ELECTION_TIMEOUT')!;
  t.true(pre.reenter, 'preCandidate re-enters itself on a timeout');
  t.deepEqual(model.states.find((s) => s.id === 'raft.leader')!.entry, ['becomeLeader']);
  // Root-level (every state) transitions are kept.
  t.true(model.transitions.some((x) => x.source === 'raft' && x.event === 'COMPACT' && x.targets.length === 0));
  t.true(expected.transitions.length >= 30, `raft has ${expected.transitions.length} transitions`);
});

test('raft: mermaid export names every state and every arrow, and highlights the current state', (t) => {
  const model = chartModel(raftMachine);
  const text = toMermaid(model, { active: 'candidate' });
  t.true(text.startsWith('stateDiagram-v2\n'));
  t.true(text.includes('[*] --> follower'));
  for (const s of model.states) t.true(text.includes(`state "${s.key}" as ${s.key}`), `declares ${s.key}`);
  const arrows = text.split('\n').filter((l) => l.includes(' --> ') && !l.includes('[*]'));
  const targeted = model.transitions.filter((x) => x.targets.length > 0);
  t.is(arrows.length, targeted.length, 'one arrow per targeted transition');
  t.true(arrows.includes('  candidate --> leader : always [won]'));
  t.true(arrows.includes('  follower --> preCandidate : ELECTION_TIMEOUT [canCampaign]'));
  // Targetless transitions sit inside their state.
  t.true(text.includes('leader : HEARTBEAT_TIMEOUT / heartbeat'));
  t.true(text.includes('class candidate active'));
  t.false(text.includes('class leader active'));
});

test('raft: SVG export draws every state and every arrow, and fills only the current state', async (t) => {
  const model = chartModel(raftMachine);
  const svg = await toSvg(model, { active: 'leader' });
  t.true(svg.includes('<svg'));
  t.true(svg.trimEnd().endsWith('</svg>'));
  const group = (id: string) => {
    const start = svg.indexOf(`<g id="${id}"`);
    if (start < 0) return null;
    return svg.slice(start, svg.indexOf('</g>', start));
  };
  for (const s of model.states) {
    const g = group(`st|${s.id}`);
    t.truthy(g, `state ${s.id} drawn`);
    t.true(g!.includes(`>${s.key}<`), `state ${s.id} labelled`);
    t.is(g!.includes('fill="#ffd54f"'), s.key === 'leader', `only the leader is highlighted (${s.id})`);
  }
  for (const x of model.transitions.filter((x) => x.targets.length > 0)) {
    t.true(svg.includes(`<g id="tr|${x.source}|${x.targets[0]}|`), `arrow ${x.source} -> ${x.targets[0]}`);
  }
  t.true(svg.includes('always [won]'));
  // Every targeted transition becomes one arrow (not compact): count them.
  const arrowCount = (svg.match(/<g id="tr\|/g) ?? []).length;
  t.is(arrowCount, model.transitions.reduce((n, x) => n + x.targets.length, 0));
});

test('exportChart: json, mermaid, dot for every machine; json has states and transitions', async (t) => {
  for (const { name, machine } of machines) {
    const json = JSON.parse(await exportChart(machine, 'json', {})) as ReturnType<typeof toJson>;
    t.deepEqual(json.states.map((s) => s.id).sort(), fromConfig(machine).states, name);
    t.is(json.transitions.length, fromConfig(machine).transitions.length, name);
    const mermaid = await exportChart(machine, 'mermaid');
    t.true(mermaid.length > 20, name);
    const dot = await exportChart(machine, 'dot');
    t.true(dot.startsWith('digraph'), name);
  }
});

test('activeStates resolves flat, dotted and nested state values', (t) => {
  const model = chartModel(raftMachine);
  t.deepEqual(activeStates(model, 'leader'), ['raft.leader']);
  t.deepEqual(activeStates(model, 'nope'), []);
  const nested: ChartModel = {
    machine: 'm', initial: 'm.a',
    states: [
      { id: 'm.a', key: 'a', parent: 'm', type: 'compound', initial: 'm.a.b', entry: [], exit: [], invoke: [] },
      { id: 'm.a.b', key: 'b', parent: 'm.a', type: 'atomic', initial: null, entry: [], exit: [], invoke: [] },
    ],
    transitions: [],
  };
  t.deepEqual(activeStates(nested, { a: 'b' }), ['m.a', 'm.a.b']);
  t.deepEqual(activeStates(nested, 'a.b'), ['m.a', 'm.a.b']);
});
