/**
 * Start-up cost of whole processes: each measurement is a fresh `node` running one small program
 * (test/support/startup-programs.ts) or the `wayfind` CLI, timed from spawn() to the line the
 * program prints when its job is done (for the CLI: its answer on stdout), with the CPU time and
 * RSS it took to get there, and its peak RSS (`process.resourceUsage()`, printed by the program).
 * The time to the process's exit is recorded too: a process that has made an HTTP/1.1 request with
 * undici can take a few hundred ms more to exit while V8 finishes compiling undici's WebAssembly
 * HTTP parser (llhttp) in the background, whatever the program did.
 *
 * Every case is a set of variants measured together: each round runs all of a case's variants
 * back to back in a fresh random order, and ratios are taken within the round (paired), so a
 * machine that slows down for a few seconds slows both sides of a ratio. Reported: the median of
 * each variant and the median (and spread) of the per-round ratios.
 *
 *   1. `await import('wayfind')` vs `await import('undici')` (and a bare `node`, the floor both
 *      share): the target is ≤ 1.3× undici when neither etcd nor gRPC is used.
 *   2. memory registry, start → first routed request, vs undici's own first request.
 *   3. Consul, start → first routed request, vs a hand-written undici lookup (one health query)
 *      and request, against the project's Consul test server (in a helper process).
 *   4. `wayfind resolve` on Consul vs the same on etcd (real etcd): what etcd's stack costs a
 *      CLI run, now that the Consul run does not load it.
 *   5. RSS of an idle process after `createWayfind()` vs after `import('undici')`.
 *
 * Runs the built package (dist/, rebuilt first when a file under src/ is newer). To compare
 * another build side by side, point WAYFIND_STARTUP_DIST at its dist directory (it must be able
 * to resolve this repository's node_modules, e.g. through a symlink next to it).
 *
 *   npx tsx bench/startup.ts [--quick]
 */
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, statSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  MARK_ON_OUTPUT,
  PROGRAMS,
  parseReport,
  runNode,
  type NodeRun,
  type ProgramReport,
  type StartupProgram,
} from '../test/support/startup-programs.js'
import { HelperProcess } from './lib/child.js'
import { EtcdMissingError, startEtcd, type EtcdServer } from './lib/etcd.js'
import {
  check,
  ms,
  note,
  printTable,
  writeResults,
  x,
  type BenchOptions,
  type BenchOutcome,
  type Check,
} from './lib/report.js'
import { median, percentileSorted, ratio, shuffled } from './lib/stats.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const RUN_TIMEOUT_MS = 30_000

interface Variant {
  readonly name: string
  readonly args: readonly string[]
  /** What stdout must contain for the run to count (the CLI printed the instance). */
  readonly expect?: string
}

interface Case {
  readonly name: string
  /** variants[0] is measured against variants[1]; a third is a floor both share. */
  readonly variants: readonly Variant[]
}

interface Sample extends ProgramReport {
  /** Wall time from spawn() to the job done (the marker line, the CLI's answer), ms. */
  readonly toOutputMs: number
  /** Wall time from spawn() to the process's exit, ms. */
  readonly toExitMs: number
}

function programVariant(p: StartupProgram): Variant {
  return { name: p.name, args: ['--input-type=module', '-e', p.source] }
}

/** Newest modification time under `dir` (recursively), ms. */
function newestMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs)
  }
  return newest
}

/** The dist directory to measure; builds this repository's when it is missing or stale. */
function distDir(): string {
  const override = process.env.WAYFIND_STARTUP_DIST
  if (override !== undefined && override !== '') return resolve(override)
  const dist = join(ROOT, 'dist')
  let built = 0
  try {
    built = statSync(join(dist, 'index.js')).mtimeMs
  } catch {
    // Not built yet.
  }
  if (built < newestMtime(join(ROOT, 'src'))) {
    note('  building dist/ (npm run build): it is missing or older than src/')
    execFileSync(
      process.execPath,
      [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      { cwd: ROOT, stdio: 'inherit' },
    )
  }
  return dist
}

/** The environment of every measured process: none of the host's registry or Node settings. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env))
    if (!/^(CONSUL_|ETCDCTL_|NODE_OPTIONS$|NODE_DEBUG$)/.test(k)) env[k] = v
  return { ...env, ...extra }
}

async function measure(v: Variant, env: NodeJS.ProcessEnv): Promise<Sample> {
  const run: NodeRun = await runNode(v.args, { cwd: ROOT, env, timeoutMs: RUN_TIMEOUT_MS })
  const failed = (why: string): Error =>
    new Error(`${v.name}: ${why} (exit ${String(run.code ?? run.signal)}): ${run.stderr.trim()}`)
  if (run.code !== 0) throw failed('failed')
  if (v.expect !== undefined && !run.stdout.includes(v.expect))
    throw failed(`printed no ${v.expect}`)
  const report = parseReport(run.stdout)
  if (report === undefined) throw failed('printed no marker line')
  return { ...report, toOutputMs: run.toOutputMs, toExitMs: run.toExitMs }
}

const mb = (bytes: number): string =>
  Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : '-'

/** Median, p10 and p90 of the per-round ratios variants[0] / variants[1] of one figure. */
interface PairedRatio {
  readonly median: number
  readonly p10: number
  readonly p90: number
}

interface VariantResult {
  readonly name: string
  readonly wallMs: number
  readonly exitMs: number
  readonly cpuMs: number
  readonly rssBytes: number
  readonly maxRssBytes: number
  readonly samples: readonly Sample[]
}

interface CaseResult {
  readonly name: string
  readonly variants: readonly VariantResult[]
  readonly wallRatio: PairedRatio
  readonly cpuRatio: PairedRatio
  readonly rssRatio: PairedRatio
  /** (variants[0] − floor) / (variants[1] − floor) of the median wall times; NaN without a floor. */
  readonly wallAboveFloorRatio: number
  readonly cpuAboveFloorRatio: number
}

function pairedRatio(a: readonly number[], b: readonly number[]): PairedRatio {
  const ratios: number[] = []
  for (let r = 0; r < Math.min(a.length, b.length); r++)
    ratios.push((a[r] ?? Number.NaN) / (b[r] ?? Number.NaN))
  const sorted = ratios.sort((p, q) => p - q)
  return {
    median: ratio(percentileSorted(sorted, 50), 1),
    p10: ratio(percentileSorted(sorted, 10), 1),
    p90: ratio(percentileSorted(sorted, 90), 1),
  }
}

function summarizeCase(c: Case, samples: readonly Sample[][]): CaseResult {
  const variants: VariantResult[] = c.variants.map((v, i) => {
    const s = samples[i] ?? []
    return {
      name: v.name,
      wallMs: median(s.map((t) => t.toOutputMs)),
      exitMs: median(s.map((t) => t.toExitMs)),
      cpuMs: median(s.map((t) => t.cpuMs)),
      rssBytes: median(s.map((t) => t.rssBytes)),
      maxRssBytes: median(s.map((t) => t.maxRssBytes)),
      samples: s,
    }
  })
  const series = (i: number, f: (t: Sample) => number): number[] => (samples[i] ?? []).map(f)
  const [a, b, floor] = variants
  const aboveFloor = (f: (v: VariantResult) => number): number =>
    a === undefined || b === undefined || floor === undefined
      ? Number.NaN
      : ratio(f(a) - f(floor), f(b) - f(floor))
  return {
    name: c.name,
    variants,
    wallRatio: pairedRatio(
      series(0, (t) => t.toOutputMs),
      series(1, (t) => t.toOutputMs),
    ),
    cpuRatio: pairedRatio(
      series(0, (t) => t.cpuMs),
      series(1, (t) => t.cpuMs),
    ),
    rssRatio: pairedRatio(
      series(0, (t) => t.rssBytes),
      series(1, (t) => t.rssBytes),
    ),
    wallAboveFloorRatio: aboveFloor((v) => v.wallMs),
    cpuAboveFloorRatio: aboveFloor((v) => v.cpuMs),
  }
}

const spread = (r: PairedRatio): string => `${x(r.median)} (${x(r.p10)}–${x(r.p90)})`

export async function run(opts: BenchOptions): Promise<BenchOutcome> {
  const rounds = opts.quick ? 5 : 15
  const dist = distDir()
  const entry = pathToFileURL(join(dist, 'index.js')).href
  const cli = join(dist, 'cli', 'main.js')
  note(`  measuring ${dist} (${rounds} rounds per case, variants in a random order per round)`)

  const backend = createServer((_req, res) => {
    res.end('ok')
  })
  backend.listen(0, '127.0.0.1')
  await once(backend, 'listening')
  const backendPort = String((backend.address() as AddressInfo).port)
  const consul = await HelperProcess.start(
    new URL('./lib/consul-server-process.ts', import.meta.url).pathname,
  )
  let etcd: EtcdServer | undefined
  let etcdMissing: string | undefined
  try {
    const consulUrl = consul.ready.url as string
    await consul.helper.request({
      type: 'register',
      service: 'backend',
      instanceId: 'b1',
      port: Number(backendPort),
      seq: 0,
    })
    try {
      etcd = await startEtcd()
      await etcd.client().put('/services/backend/b1').value(`127.0.0.1:${backendPort}`)
    } catch (err) {
      if (!(err instanceof EtcdMissingError)) throw err
      etcdMissing = err.message
      note(`  ${err.message}: the CLI case on etcd is skipped`)
    }

    const env = childEnv({
      WAYFIND_ENTRY: entry,
      BACKEND_PORT: backendPort,
      CONSUL_URL: consulUrl,
      ...(etcd === undefined ? {} : { ETCD_HOSTS: etcd.host }),
    })
    const bareNode: Variant = { ...programVariant(PROGRAMS.nothing), name: 'bare node (floor)' }
    // The CLI prints no marker: a preloaded module takes the figures at its answer.
    const resolveOn = (flag: string, where: string): Variant => ({
      name: `wayfind resolve ${flag}`,
      args: ['--import', MARK_ON_OUTPUT, cli, 'resolve', 'backend', flag, where, '--json'],
      expect: '"id":"b1"',
    })
    const cases: Case[] = [
      {
        name: 'import: wayfind vs undici',
        variants: [
          programVariant(PROGRAMS.importWayfind),
          programVariant(PROGRAMS.importUndici),
          bareNode,
        ],
      },
      {
        name: 'createWayfind(), idle: vs import undici',
        variants: [programVariant(PROGRAMS.createWayfind), programVariant(PROGRAMS.importUndici)],
      },
      {
        name: 'memory → first request: vs undici',
        variants: [programVariant(PROGRAMS.memoryRequest), programVariant(PROGRAMS.undiciRequest)],
      },
      {
        name: 'Consul → first request: vs undici + 1 query',
        variants: [
          programVariant(PROGRAMS.consulRequest),
          programVariant(PROGRAMS.undiciConsulRequest),
        ],
      },
      ...(etcd === undefined
        ? []
        : [
            {
              name: 'CLI resolve: on Consul vs on etcd',
              variants: [resolveOn('--consul', consulUrl), resolveOn('--etcd', etcd.host)],
            },
          ]),
    ]

    // One unmeasured run of everything: the file cache is warm for every variant alike.
    for (const c of cases) for (const v of c.variants) await measure(v, env)
    const samples = cases.map((c) => c.variants.map((): Sample[] => []))
    for (let r = 0; r < rounds; r++)
      for (const [ci, c] of cases.entries())
        for (const vi of shuffled(c.variants.map((_, i) => i))) {
          const v = c.variants[vi] as Variant
          samples[ci]?.[vi]?.push(await measure(v, env))
        }
    const results = cases.map((c, i) => summarizeCase(c, samples[i] ?? []))

    printTable(
      `Start-up, whole processes (measured vs reference): medians of ${rounds} rounds; ratios are medians of per-round ratios (p10–p90)`,
      ['case', 'wall', 'wall ratio', 'CPU', 'CPU ratio', 'to exit'],
      results.flatMap((r) => {
        const [a, b, floor] = r.variants
        const rows = [
          [
            r.name,
            `${ms(a?.wallMs ?? Number.NaN)} / ${ms(b?.wallMs ?? Number.NaN)}`,
            spread(r.wallRatio),
            `${ms(a?.cpuMs ?? Number.NaN)} / ${ms(b?.cpuMs ?? Number.NaN)}`,
            spread(r.cpuRatio),
            `${ms(a?.exitMs ?? Number.NaN)} / ${ms(b?.exitMs ?? Number.NaN)}`,
          ],
        ]
        if (floor !== undefined)
          rows.push([
            `  above bare node (${ms(floor.wallMs)} wall, ${ms(floor.cpuMs)} CPU)`,
            `${ms((a?.wallMs ?? Number.NaN) - floor.wallMs)} / ${ms((b?.wallMs ?? Number.NaN) - floor.wallMs)}`,
            x(r.wallAboveFloorRatio),
            `${ms((a?.cpuMs ?? Number.NaN) - floor.cpuMs)} / ${ms((b?.cpuMs ?? Number.NaN) - floor.cpuMs)}`,
            x(r.cpuAboveFloorRatio),
            '',
          ])
        return rows
      }),
    )
    printTable(
      'Memory (measured vs reference): RSS when the job is done, and peak RSS',
      ['case', 'RSS', 'RSS ratio', 'peak RSS'],
      results.map((r) => {
        const [a, b] = r.variants
        return [
          r.name,
          `${mb(a?.rssBytes ?? Number.NaN)} / ${mb(b?.rssBytes ?? Number.NaN)}`,
          spread(r.rssRatio),
          `${mb(a?.maxRssBytes ?? Number.NaN)} / ${mb(b?.maxRssBytes ?? Number.NaN)}`,
        ]
      }),
    )
    note(
      "  wall: from spawn() to the job done (the program's \"done\" line, the CLI's answer on stdout); CPU: the process's user + system time at that point.",
    )
    const importCase = results[0]
    const checks: Check[] = [
      check(
        'startup: import wayfind vs import undici, wall (whole process, paired)',
        importCase?.wallRatio.median ?? Number.NaN,
        '<=',
        1.3,
      ),
      check(
        'startup: import wayfind vs import undici, CPU (whole process, paired)',
        importCase?.cpuRatio.median ?? Number.NaN,
        '<=',
        1.3,
      ),
    ]
    writeResults('startup', {
      rounds,
      // Relative to the repository, so a results file names no path of the machine it ran on.
      dist: relative(ROOT, dist) || '.',
      cases: results,
      checks,
    })
    return {
      name: 'startup',
      checks,
      ...(etcdMissing === undefined ? {} : { error: etcdMissing }),
    }
  } finally {
    await etcd?.remove()
    await consul.helper.stop()
    backend.close()
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  run({ quick: process.argv.includes('--quick') }).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exit(1)
    },
  )
}
