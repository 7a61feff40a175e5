/**
 * The benchmark suite: `npm run bench` (full, < 10 min on 2 vCPU) or `npm run bench -- --quick`
 * (smoke test for CI, < 2 min: numbers only, no thresholds enforced).
 *
 *   --quick          small samples
 *   --only a,b       run only these benchmarks (names as in the list below)
 *
 * Each benchmark prints a table and writes `bench/results/<name>.json` and an SVG chart. At the
 * end every ratio is printed next to its target. Exit code: 0 when every benchmark ran (targets
 * missed are reported, not fatal), 1 when one could not run (e.g. etcd missing) or crashed.
 */
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { removeAllEtcd } from './lib/etcd.js'
import {
  printTable,
  writeResults,
  type BenchOptions,
  type BenchOutcome,
  type Check,
} from './lib/report.js'

interface Entry {
  readonly name: string
  readonly file: string
  /** Bound on the benchmark's run time (full mode; quick mode gets a third of it, at least 20 s). */
  readonly budgetMs: number
}

const SUITE: readonly Entry[] = [
  { name: 'latency-etcd', file: './latency-etcd.ts', budgetMs: 90_000 },
  { name: 'latency-consul', file: './latency-consul.ts', budgetMs: 120_000 },
  { name: 'deregister', file: './deregister.ts', budgetMs: 90_000 },
  { name: 'large', file: './large.ts', budgetMs: 90_000 },
  { name: 'many', file: './many.ts', budgetMs: 240_000 },
  { name: 'pick', file: './pick.ts', budgetMs: 60_000 },
  { name: 'dispatch', file: './dispatch.ts', budgetMs: 240_000 },
  { name: 'startup', file: './startup.ts', budgetMs: 180_000 },
]

type RunFn = (options: BenchOptions) => Promise<unknown>

function isOutcome(v: unknown): v is BenchOutcome {
  return typeof v === 'object' && v !== null && Array.isArray((v as { checks?: unknown }).checks)
}

class BudgetExceeded extends Error {}

async function withBudget<T>(p: Promise<T>, budgetMs: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new BudgetExceeded(`${name} did not finish within ${budgetMs / 1000} s`))
        }, budgetMs)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: false,
  })
  if (values.help === true) {
    process.stdout.write(
      `usage: npm run bench [-- --quick] [-- --only ${SUITE.map((e) => e.name).join(',')}]\n`,
    )
    return 0
  }
  const quick = values.quick
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  const unknown = only?.filter((n) => !SUITE.some((e) => e.name === n)) ?? []
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown benchmark(s): ${unknown.join(', ')}; known: ${SUITE.map((e) => e.name).join(', ')}\n`,
    )
    return 2
  }
  const started = performance.now()
  const checks: (Check & { bench: string })[] = []
  const failures: string[] = []
  const timings: Record<string, number> = {}
  process.stdout.write(
    `wayfind benchmarks (${quick ? 'quick' : 'full'}), Node ${process.version}\n`,
  )
  for (const entry of SUITE) {
    if (only !== undefined && !only.includes(entry.name)) continue
    const url = new URL(entry.file, import.meta.url)
    if (!existsSync(url)) {
      process.stdout.write(
        `\n[${entry.name}] not present (bench/${entry.file.slice(2)}), skipped\n`,
      )
      continue
    }
    process.stdout.write(`\n[${entry.name}]\n`)
    const t0 = performance.now()
    try {
      const mod = (await import(url.href)) as { run?: RunFn }
      if (typeof mod.run !== 'function')
        throw new Error(`bench/${entry.file.slice(2)} exports no run()`)
      const budget = quick ? Math.max(20_000, entry.budgetMs / 3) : entry.budgetMs
      const outcome = await withBudget(mod.run({ quick }), budget, entry.name)
      if (isOutcome(outcome)) {
        for (const c of outcome.checks) checks.push({ ...c, bench: entry.name })
        if (outcome.error !== undefined) failures.push(`${entry.name}: ${outcome.error}`)
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      failures.push(`${entry.name}: ${message}`)
      process.stdout.write(`  FAILED: ${message}\n`)
      if (err instanceof BudgetExceeded) {
        // It is still running and would skew every later measurement: stop here, stop its
        // etcd, and let process.exit end its helpers (they exit when the IPC channel closes).
        timings[entry.name] = Math.round(performance.now() - t0)
        await removeAllEtcd()
        failures.push('the remaining benchmarks were not run')
        break
      }
    }
    timings[entry.name] = Math.round(performance.now() - t0)
  }
  const totalS = (performance.now() - started) / 1000
  if (checks.length > 0)
    printTable(
      `Targets (${quick ? 'quick run: small samples, informative only' : 'full run'})`,
      ['benchmark', 'measured', 'target', ''],
      checks.map((c) => [
        c.name,
        Number.isFinite(c.value) ? c.value.toFixed(2) : '-',
        c.target,
        c.met ? 'met' : 'MISSED',
      ]),
    )
  writeResults('summary', { quick, totalS, timingsMs: timings, checks, failures })
  process.stdout.write(
    `\nsuite finished in ${totalS.toFixed(1)} s${failures.length > 0 ? `; ${failures.length} benchmark(s) failed:\n  ${failures.join('\n  ')}` : ''}\n`,
  )
  return failures.length > 0 ? 1 : 0
}

main().then(
  (code) => {
    // Helper processes and sockets are closed by each benchmark; exit anyway so that a leaked
    // handle in one benchmark cannot keep CI waiting.
    process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
