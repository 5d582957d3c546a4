/**
 * State charts drawn from the XState machine definitions themselves (never by hand):
 *   machine → graph model (states, transitions) → DOT → SVG (Graphviz compiled to WebAssembly,
 *   @viz-js/viz, offline) | Mermaid stateDiagram-v2 | JSON.
 *
 * The model walks the machine's resolved StateNode tree rather than `toDirectedGraph` from
 * xstate/graph: that one leaves out eventless (`always`) transitions, which are exactly how the
 * Raft chart moves from candidate to leader (checked with xstate 5.33).
 *
 * Drawing conventions (UML-like): a transition with a target is an arrow labelled
 * `EVENT [guard] / actions`; a targetless transition (handled in place, no exit/entry) is listed
 * inside its state like `MSG [staleTerm] / answerStale`, as are entry/exit actions and invoked
 * actors. Transitions declared on the machine root apply in every state: their arrows start at
 * a dashed "any state" node.
 */
import type { AnyStateMachine } from 'xstate';

export type ChartStateType = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
export type ChartTransitionKind = 'event' | 'always' | 'after' | 'done' | 'error' | 'snapshot';

export interface ChartState {
  /** XState id (`raft.follower` by default: the path joined with dots). */
  id: string;
  /** Name within its parent (`follower`). */
  key: string;
  /** Id of the parent state; the machine root for top-level states. */
  parent: string;
  type: ChartStateType;
  /** Id of the initial child (compound states). */
  initial: string | null;
  entry: string[];
  exit: string[];
  invoke: string[];
  description?: string;
}

export interface ChartTransition {
  /** State the transition is declared on (may be the machine root). */
  source: string;
  /** Event type; '' for `always`, 'after <delay>' for delayed ones. */
  event: string;
  kind: ChartTransitionKind;
  /** Target state ids; empty for a targetless (internal) transition. */
  targets: string[];
  guard: string | null;
  actions: string[];
  reenter: boolean;
  /** Position among the transitions of its source for the same event (guards are tried in order). */
  order: number;
}

export interface ChartModel {
  /** Id of the machine (its root state node). */
  machine: string;
  initial: string | null;
  states: ChartState[];
  transitions: ChartTransition[];
}

// ---- model ----------------------------------------------------------------------------------

type AnyNode = AnyStateMachine['root'];

/** A readable name for a guard: `name`, `{ type }`, or `not(x)` / `and(a, b)` for combinators. */
export function guardName(g: unknown): string | null {
  if (g === undefined || g === null) return null;
  if (typeof g === 'string') return g;
  if (typeof g === 'function') {
    const f = g as { name?: string; guards?: unknown[]; stateValue?: unknown };
    if (Array.isArray(f.guards)) return `${f.name || 'guard'}(${f.guards.map((x) => guardName(x) ?? '?').join(', ')})`;
    if (f.stateValue !== undefined) return `stateIn(${JSON.stringify(f.stateValue)})`;
    return f.name || 'inline guard';
  }
  if (typeof g === 'object' && typeof (g as { type?: unknown }).type === 'string') return (g as { type: string }).type;
  return 'guard';
}

/** A readable name for an action: its type, the built-in's name (`assign`), or the function's name. */
export function actionName(a: unknown): string {
  if (typeof a === 'string') return a;
  if (typeof a === 'function') {
    const t = (a as { type?: unknown }).type;
    if (typeof t === 'string') return t.replace(/^xstate\./, '');
    return (a as { name?: string }).name || 'inline';
  }
  if (a && typeof a === 'object' && typeof (a as { type?: unknown }).type === 'string') return (a as { type: string }).type;
  return 'action';
}

function eventOf(eventType: string, delay?: unknown): { event: string; kind: ChartTransitionKind } {
  if (eventType.startsWith('xstate.after.')) {
    const d = delay ?? eventType.slice('xstate.after.'.length).split('.')[0];
    return { event: `after ${typeof d === 'number' ? `${d}ms` : String(d)}`, kind: 'after' };
  }
  if (eventType.startsWith('xstate.done.actor.')) return { event: `done: ${eventType.slice('xstate.done.actor.'.length)}`, kind: 'done' };
  if (eventType.startsWith('xstate.done.state.')) return { event: 'done', kind: 'done' };
  if (eventType.startsWith('xstate.error.actor.')) return { event: `error: ${eventType.slice('xstate.error.actor.'.length)}`, kind: 'error' };
  if (eventType.startsWith('xstate.snapshot.')) return { event: `snapshot: ${eventType.slice('xstate.snapshot.'.length)}`, kind: 'snapshot' };
  return { event: eventType, kind: 'event' };
}

/** The graph model of a machine: every state node and every transition, in declaration order. */
export function chartModel(machine: AnyStateMachine): ChartModel {
  const root = machine.root;
  const states: ChartState[] = [];
  const transitions: ChartTransition[] = [];
  const visit = (node: AnyNode) => {
    const transitionsOf = (node as unknown as { transitions: Map<string, unknown[]> }).transitions;
    for (const [eventType, defs] of transitionsOf) {
      defs.forEach((def, order) => {
        const t = def as { target?: AnyNode[]; guard?: unknown; actions?: readonly unknown[]; reenter?: boolean; delay?: unknown };
        transitions.push({
          source: node.id, ...eventOf(eventType, t.delay), targets: (t.target ?? []).map((n) => n.id),
          guard: guardName(t.guard), actions: (t.actions ?? []).map(actionName), reenter: t.reenter === true, order,
        });
      });
    }
    (node.always ?? []).forEach((def, order) => {
      const t = def as unknown as { target?: AnyNode[]; guard?: unknown; actions?: readonly unknown[]; reenter?: boolean };
      transitions.push({
        source: node.id, event: '', kind: 'always', targets: (t.target ?? []).map((n) => n.id),
        guard: guardName(t.guard), actions: (t.actions ?? []).map(actionName), reenter: t.reenter === true, order,
      });
    });
    for (const child of Object.values(node.states) as AnyNode[]) {
      states.push({
        id: child.id, key: child.key, parent: node.id, type: child.type as ChartStateType,
        initial: child.type === 'compound' ? (child.initial?.target?.[0]?.id ?? null) : null,
        entry: child.entry.map(actionName), exit: child.exit.map(actionName),
        invoke: child.invoke.map((i) => (typeof i.src === 'string' ? i.src : i.id)),
        ...(child.description ? { description: child.description } : {}),
      });
      visit(child);
    }
  };
  visit(root);
  return { machine: root.id, initial: root.initial?.target?.[0]?.id ?? null, states, transitions };
}

/**
 * Ids of the active states for an XState state value (`'leader'`, `{ a: 'b' }`, or a dotted
 * path `'a.b'`), ancestors included. Unknown names are ignored.
 */
export function activeStates(model: ChartModel, value: unknown): string[] {
  const out: string[] = [];
  const childOf = (parent: string, key: string) => model.states.find((s) => s.parent === parent && s.key === key);
  const walk = (parent: string, v: unknown) => {
    if (typeof v === 'string') {
      let p = parent;
      for (const key of v.split('.')) {
        const s = childOf(p, key);
        if (!s) return;
        out.push(s.id);
        p = s.id;
      }
    } else if (v && typeof v === 'object') {
      for (const [key, sub] of Object.entries(v)) {
        const s = childOf(parent, key);
        if (!s) continue;
        out.push(s.id);
        walk(s.id, sub);
      }
    }
  };
  walk(model.machine, value);
  return out;
}

/** `EVENT [guard] / a, b` (event `always` for eventless transitions). */
export function transitionLabel(t: ChartTransition): string {
  return `${t.kind === 'always' ? 'always' : t.event}${t.guard ? ` [${t.guard}]` : ''}${t.actions.length ? ` / ${t.actions.join(', ')}` : ''}`;
}

// ---- DOT and SVG ----------------------------------------------------------------------------

export interface DrawOptions {
  /** State value (or state ids) to highlight. */
  active?: unknown;
  /** Draw with a title line (the machine name). */
  title?: string;
  /**
   * Only states and labelled arrows (event [guard]): no actions, no in-state lines. Small enough
   * to sit in a member's card.
   */
  compact?: boolean;
  /** Graphviz rankdir (default LR). */
  direction?: 'LR' | 'TB';
}

/** Element ids in the SVG, so a page can highlight states and transitions without re-rendering. */
export const svgIds = {
  state: (id: string) => `st|${id}`,
  /** Prefix of the ids of the arrows from `source` to `target` (followed by the transition's index). */
  transitions: (source: string, target: string) => `tr|${source}|${target}|`,
};

const ANY = '__any__';
const html = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

function activeIds(model: ChartModel, active: unknown): Set<string> {
  if (active === undefined || active === null) return new Set();
  if (Array.isArray(active) && active.every((a) => typeof a === 'string' && model.states.some((s) => s.id === a))) return new Set(active as string[]);
  return new Set(activeStates(model, active));
}

/** Graphviz DOT for the chart; compound and parallel states become clusters. */
export function toDot(model: ChartModel, o: DrawOptions = {}): string {
  const active = activeIds(model, o.active);
  const children = (parent: string) => model.states.filter((s) => s.parent === parent);
  const hasChildren = (id: string) => model.states.some((s) => s.parent === id);
  const internal = (id: string) => (o.compact ? [] : model.transitions.filter((t) => t.source === id && t.targets.length === 0));
  // Arrows need a node at each end: a cluster is entered at its initial child (or first child).
  const anchor = (id: string): string => {
    if (!hasChildren(id)) return id;
    const s = model.states.find((x) => x.id === id)!;
    return anchor(s.initial ?? children(id)[0]!.id);
  };
  const lines: string[] = [
    `digraph ${q(model.machine)} {`,
    `  graph [rankdir=${o.direction ?? 'LR'}, compound=true, fontname="Helvetica", fontsize=12, bgcolor="transparent", nodesep=0.35, ranksep=0.7, pad=0.15${o.title ? `, label=${q(o.title)}, labelloc=t` : ''}];`,
    '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#4a5568", fontname="Helvetica", fontsize=11, margin="0.2,0.06"];',
    '  edge [fontname="Helvetica", fontsize=9, color="#4a5568", fontcolor="#2d3748", arrowsize=0.7];',
  ];
  const stateLabel = (s: ChartState) => {
    const rows = [`<tr><td><b>${html(s.key)}</b></td></tr>`];
    const small = (text: string) => rows.push(`<tr><td align="left"><font point-size="8" color="#4a5568">${html(text)}</font></td></tr>`);
    if (!o.compact) {
      for (const a of s.entry) small(`entry / ${a}`);
      for (const a of s.exit) small(`exit / ${a}`);
      for (const i of s.invoke) small(`invoke ${i}`);
    }
    for (const t of internal(s.id)) small(transitionLabel(t));
    return `<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">${rows.join('')}</table>>`;
  };
  const emit = (parent: string, indent: string) => {
    const kids = children(parent);
    const parentState = model.states.find((s) => s.id === parent);
    const initial = parent === model.machine ? model.initial : parentState?.initial ?? null;
    if (initial && parentState?.type !== 'parallel') {
      lines.push(`${indent}${q(`__initial__${parent}`)} [shape=point, width=0.1, style=filled, fillcolor="#2d3748", label=""];`);
      lines.push(`${indent}${q(`__initial__${parent}`)} -> ${q(anchor(initial))}${hasChildren(initial) ? ` [lhead=${q(`cluster_${initial}`)}]` : ''};`);
    }
    for (const s of kids) {
      const on = active.has(s.id);
      if (hasChildren(s.id)) {
        lines.push(`${indent}subgraph ${q(`cluster_${s.id}`)} {`);
        lines.push(`${indent}  id=${q(svgIds.state(s.id))}; class=${q(`state${on ? ' active' : ''}`)}; label=${stateLabel(s)};`);
        lines.push(`${indent}  style="rounded${on ? ',filled' : ''}${s.type === 'parallel' ? ',dashed' : ''}"; color="#4a5568"; fillcolor="#fff3c4";`);
        emit(s.id, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        const attrs = [
          `id=${q(svgIds.state(s.id))}`, `class=${q(`state${on ? ' active' : ''}`)}`, `label=${stateLabel(s)}`,
          ...(s.type === 'final' ? ['peripheries=2'] : []),
          ...(s.type === 'history' ? ['shape=circle'] : []),
          ...(on ? ['fillcolor="#ffd54f"', 'penwidth=2.2', 'color="#b7791f"'] : []),
        ];
        lines.push(`${indent}${q(s.id)} [${attrs.join(', ')}];`);
      }
    }
  };
  emit(model.machine, '  ');
  const rootTargeted = model.transitions.some((t) => t.source === model.machine && t.targets.length > 0);
  if (rootTargeted) lines.push(`  ${q(ANY)} [label="any state", style="rounded,dashed", fontcolor="#4a5568", fontsize=9];`);
  const rootInternal = internal(model.machine);
  if (rootInternal.length) {
    const rows = rootInternal.map((t) => `<tr><td align="left">${html(transitionLabel(t))}</td></tr>`).join('');
    lines.push(`  ${q('__machine__')} [shape=note, style=filled, fillcolor="#f7fafc", fontsize=8, color="#a0aec0", label=<<table border="0" cellspacing="0" cellpadding="1"><tr><td align="left"><i>in every state</i></td></tr>${rows}</table>>];`);
  }
  // One arrow per (transition, target); in compact mode, one per (source, target) with a line per transition.
  const arrows: { from: string; target: string; source: string; index: number; labels: string[]; dashed: boolean }[] = [];
  model.transitions.forEach((t, i) => {
    for (const target of t.targets) {
      const text = `${html(t.kind === 'always' ? 'always' : t.event)}${t.guard ? ` [${html(t.guard)}]` : ''}`;
      const prior = o.compact ? arrows.find((a) => a.source === t.source && a.target === target) : undefined;
      if (prior) {
        prior.labels.push(text);
        prior.dashed &&= t.kind === 'always';
        continue;
      }
      const actions = t.actions.length && !o.compact ? `<br/><font point-size="8" color="#4a5568">/ ${html(t.actions.join(', '))}</font>` : '';
      arrows.push({ from: t.source === model.machine ? ANY : anchor(t.source), source: t.source, target, index: i, labels: [text + actions], dashed: t.kind === 'always' });
    }
  });
  for (const a of arrows) {
    const attrs = [
      `id=${q(`tr|${a.source}|${a.target}|${a.index}`)}`, 'class="transition"', `label=<${a.labels.join('<br/>')}>`,
      ...(a.dashed ? ['style=dashed'] : []),
      ...(a.source !== model.machine && hasChildren(a.source) ? [`ltail=${q(`cluster_${a.source}`)}`] : []),
      ...(hasChildren(a.target) ? [`lhead=${q(`cluster_${a.target}`)}`] : []),
    ];
    lines.push(`  ${q(a.from)} -> ${q(anchor(a.target))} [${attrs.join(', ')}];`);
  }
  lines.push('}');
  return lines.join('\n');
}

type VizInstance = Awaited<ReturnType<typeof import('@viz-js/viz').instance>>;
let vizPromise: Promise<VizInstance> | null = null;

/** SVG rendered by Graphviz (WebAssembly; loaded once per process). */
export async function toSvg(model: ChartModel, o: DrawOptions = {}): Promise<string> {
  vizPromise ??= import('@viz-js/viz').then((m) => m.instance());
  const viz = await vizPromise;
  return viz.renderString(toDot(model, o), { format: 'svg', engine: 'dot' });
}

// ---- Mermaid --------------------------------------------------------------------------------

/** Mermaid stateDiagram-v2 text; the active states get a `classDef active`. */
export function toMermaid(model: ChartModel, o: DrawOptions = {}): string {
  const active = activeIds(model, o.active);
  // Mermaid ids are plain words: the path below the root, joined with '_'.
  const alias = new Map<string, string>();
  for (const s of model.states) alias.set(s.id, `${s.parent === model.machine ? '' : `${alias.get(s.parent)}_`}${s.key.replace(/[^A-Za-z0-9_]/g, '_')}`);
  const text = (s: string) => s.replace(/[:;#]/g, ' ').replace(/\s+/g, ' ').trim();
  const children = (parent: string) => model.states.filter((s) => s.parent === parent);
  const lines = ['stateDiagram-v2'];
  if (o.title) lines.push(`  %% ${text(o.title)}`);
  const emit = (parent: string, indent: string) => {
    const p = model.states.find((s) => s.id === parent);
    const initial = parent === model.machine ? model.initial : p?.initial ?? null;
    if (initial && p?.type !== 'parallel') lines.push(`${indent}[*] --> ${alias.get(initial)}`);
    children(parent).forEach((s, i) => {
      const a = alias.get(s.id)!;
      if (p?.type === 'parallel' && i > 0) lines.push(`${indent}--`);
      lines.push(`${indent}state "${text(s.key)}" as ${a}`);
      for (const e of s.entry) lines.push(`${indent}${a} : entry / ${text(e)}`);
      for (const e of s.exit) lines.push(`${indent}${a} : exit / ${text(e)}`);
      for (const t of model.transitions.filter((t) => t.source === s.id && t.targets.length === 0)) lines.push(`${indent}${a} : ${text(transitionLabel(t))}`);
      if (children(s.id).length) {
        lines.push(`${indent}state ${a} {`);
        emit(s.id, `${indent}  `);
        lines.push(`${indent}}`);
      }
      if (s.type === 'final') lines.push(`${indent}${a} --> [*]`);
    });
  };
  emit(model.machine, '  ');
  const rootTransitions = model.transitions.filter((t) => t.source === model.machine);
  // Root transitions apply in every state: a pseudo-state "any state" carries them.
  if (rootTransitions.length) lines.push('  state "any state" as __any');
  for (const t of rootTransitions.filter((t) => !t.targets.length)) lines.push(`  __any : ${text(transitionLabel(t))}`);
  for (const t of model.transitions) {
    for (const target of t.targets) {
      const from = t.source === model.machine ? '__any' : alias.get(t.source);
      lines.push(`  ${from} --> ${alias.get(target)} : ${text(transitionLabel(t))}`);
    }
  }
  if (active.size) {
    lines.push('  classDef active fill:#ffd54f,stroke:#b7791f,stroke-width:2px');
    for (const id of active) if (!children(id).length) lines.push(`  class ${alias.get(id)} active`);
  }
  return lines.join('\n');
}

// ---- JSON -----------------------------------------------------------------------------------

export function toJson(model: ChartModel, o: DrawOptions = {}): { machine: string; initial: string | null; active: string[]; states: ChartState[]; transitions: ChartTransition[] } {
  return { machine: model.machine, initial: model.initial, active: [...activeIds(model, o.active)], states: model.states, transitions: model.transitions };
}

export type ChartFormat = 'svg' | 'mermaid' | 'json' | 'dot';

export async function exportChart(machine: AnyStateMachine, format: ChartFormat, o: DrawOptions = {}): Promise<string> {
  const model = chartModel(machine);
  switch (format) {
    case 'svg':
      return toSvg(model, o);
    case 'mermaid':
      return toMermaid(model, o);
    case 'dot':
      return toDot(model, o);
    case 'json':
      return JSON.stringify(toJson(model, o), null, 2);
  }
}

// ---- `submarine-cluster chart <machine> --format svg|mermaid|json|dot` --------------------------

export async function runChartCommand(argv: string[]): Promise<number> {
  const { machines, findMachine } = await import('../machines/index.ts');
  const { parseFlags } = await import('./config.ts');
  const name = argv[0] && !argv[0].startsWith('--') ? argv[0] : undefined;
  const flags = parseFlags(name ? argv.slice(1) : argv);
  const entry = name ? findMachine(name) : undefined;
  if (!entry) {
    console.error(`${name ? `unknown machine '${name}'` : 'missing machine name'}; machines: ${machines.map((m) => m.name).join(', ')}`);
    return 2;
  }
  const format = String(flags.format ?? 'svg') as ChartFormat;
  if (!['svg', 'mermaid', 'json', 'dot'].includes(format)) {
    console.error(`--format must be svg, mermaid, json or dot (got '${format}')`);
    return 2;
  }
  const out = await exportChart(entry.machine, format, {
    active: typeof flags.state === 'string' ? flags.state : undefined,
    compact: flags.compact === true,
    direction: flags.direction === 'TB' ? 'TB' : 'LR',
  });
  if (typeof flags.out === 'string') {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(flags.out, out.endsWith('\n') ? out : `${out}\n`);
  } else process.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
  return 0;
}
