/**
 * Output of every benchmark: a table on stdout, `bench/results/<name>.json`, and charts as
 * `bench/results/<name>.svg`. Each benchmark returns its ratios so that the runner can print
 * them against their targets at the end.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpus } from 'node:os'

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results')

/** Options every benchmark's `run()` takes. */
export interface BenchOptions {
  /** Small sample sizes: a smoke test that finishes in seconds (CI). */
  readonly quick: boolean
}

/** One comparison against its target: `value` is a ratio (or a number with `unit`). */
export interface Check {
  readonly name: string
  readonly value: number
  /** Human-readable target, e.g. "≤ 1.10×". */
  readonly target: string
  readonly met: boolean
}

export interface BenchOutcome {
  readonly name: string
  readonly checks: readonly Check[]
  /** Set when the benchmark could not run (e.g. etcd missing); the runner reports it as failed. */
  readonly error?: string
}

export function check(
  name: string,
  value: number,
  op: '<=' | '>=',
  limit: number,
  unit = '×',
): Check {
  const met = Number.isFinite(value) && (op === '<=' ? value <= limit : value >= limit)
  return { name, value, target: `${op === '<=' ? '≤' : '≥'} ${limit}${unit}`, met }
}

/** Formats a millisecond value for tables: µs below 1 ms. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return '-'
  if (v < 1) return `${(v * 1000).toFixed(0)} µs`
  if (v < 10) return `${v.toFixed(2)} ms`
  if (v < 1000) return `${v.toFixed(1)} ms`
  return `${(v / 1000).toFixed(2)} s`
}

export function x(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}×` : '-'
}

/** Prints an aligned table (first column left-aligned, the others right-aligned). */
export function printTable(
  title: string,
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
  const out = [
    `\n${title}`,
    line(headers),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
  ]
  process.stdout.write(`${out.join('\n')}\n`)
}

export function note(text: string): void {
  process.stdout.write(`${text}\n`)
}

/** Writes `<name>.json` (with the machine description) and the given charts; returns the paths. */
export function writeResults(
  name: string,
  data: unknown,
  charts: Readonly<Record<string, string>> = {},
): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const paths: string[] = []
  const jsonPath = join(RESULTS_DIR, `${name}.json`)
  const payload = {
    benchmark: name,
    date: new Date().toISOString(),
    machine: {
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      platform: process.platform,
    },
    data,
  }
  writeFileSync(jsonPath, `${JSON.stringify(payload, null, 2)}\n`)
  paths.push(jsonPath)
  for (const [file, svg] of Object.entries(charts)) {
    const p = join(RESULTS_DIR, file)
    writeFileSync(p, svg)
    paths.push(p)
  }
  note(`  wrote ${paths.map((p) => relative(process.cwd(), p)).join(', ')}`)
  return paths
}
