/**
 * Text rendering of instances and changes for the CLI: aligned tables for people, one JSON
 * object per line for scripts.
 */
import type { ChangeEvent } from '../events.js'
import { hostPort, type Instance } from '../instance.js'

/** A plain JSON view of an instance (no frozen prototypes, stable key order). */
export function instanceJson(i: Instance): Record<string, unknown> {
  return {
    id: i.id,
    service: i.service,
    host: i.host,
    port: i.port,
    status: i.status,
    weight: i.weight,
    tags: [...i.tags],
    meta: { ...i.meta },
  }
}

/** One JSON line describing a change. */
export function changeJson(e: ChangeEvent, at: Date): string {
  return JSON.stringify({
    time: at.toISOString(),
    service: e.service,
    added: e.added.map(instanceJson),
    removed: e.removed.map(instanceJson),
    updated: e.updated.map(instanceJson),
    instances: e.instances.map(instanceJson),
  })
}

/** `HH:MM:SS.mmm` in local time. */
export function clockTime(d: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}

export interface TableOptions {
  /** In-flight requests per instance key, when this process sends traffic. */
  readonly inflight?: (instance: Instance) => number | undefined
  /** A marker column per instance key (`+` added, `~` updated). */
  readonly marks?: ReadonlyMap<string, string>
}

/** An aligned table of instances, sorted by id. */
export function instancesTable(instances: readonly Instance[], options: TableOptions = {}): string {
  const withMarks = options.marks !== undefined
  const headers = [
    ...(withMarks ? [''] : []),
    'ID',
    'ADDRESS',
    'STATUS',
    'WEIGHT',
    ...(options.inflight ? ['IN-FLIGHT'] : []),
    'TAGS',
  ]
  const rows = [...instances]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((i) => [
      ...(withMarks ? [options.marks.get(i.key) ?? ' '] : []),
      i.id,
      hostPort(i),
      i.status,
      String(i.weight),
      ...(options.inflight ? [String(options.inflight(i) ?? 0)] : []),
      i.tags.join(','),
    ])
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, c) => cell.padEnd(widths[c] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

/** One line per instance of a change: `+ id host:port status w=N`. */
export function changeLines(e: ChangeEvent): string[] {
  const out: string[] = []
  const describe = (mark: string, i: Instance): string =>
    `  ${mark} ${i.id}  ${hostPort(i)}  ${i.status}  w=${i.weight}`
  for (const i of e.added) out.push(describe('+', i))
  for (const i of e.updated) out.push(describe('~', i))
  for (const i of e.removed) out.push(describe('-', i))
  return out
}

/** `+1 -0 ~2`. */
export function changeCounts(e: ChangeEvent): string {
  return `+${e.added.length} -${e.removed.length} ~${e.updated.length}`
}
