/**
 * Soak: churn plus steady requests for N minutes, sampling this process's heap, RSS, open file
 * descriptors and active handles, and printing their slopes (least squares, per minute, after a
 * warm-up). It measures and flags; it asserts nothing.
 *
 * Three clients run side by side, one per registry (memory, etcd, the Consul test server), each
 * with the service `soak`: 3 stable instances and up to 6 churning ones (registered, updated,
 * deregistered every 50 ms), all real node:http instances in a helper process. Each client sends
 * steady requests through `wf.dispatcher` and also touches short-lived services that go idle
 * after 2 s, so that watches start and stop all the time. The registries' writers, etcd, the
 * Consul test server and the instances live in other processes: what is measured here is
 * wayfind and its connections only.
 *
 *   npx tsx bench/soak.ts --minutes 3      (or npm run bench -- --only soak --minutes 3)
 */
import { readdirSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { request } from 'undici'
import { consul, createWayfind, etcd, memoryRegistry, type Wayfind } from '../src/index.js'
import { HelperProcess } from './lib/child.js'
import { startEtcd, type EtcdServer } from './lib/etcd.js'
import {
  check,
  note,
  printTable,
  writeResults,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { seriesSvg } from './lib/svg-series.js'

export interface SoakOptions extends BenchOptions {
  /** Run length; default 25 s quick, 1 min full. */
  readonly minutes?: number
}

const SERVICE = 'soak'
const STABLE = 3
const CHURN_IDS = 6
const CHURN_EVERY_MS = 50
const LOOPS_PER_CLIENT = 2
/** Pause between a loop's requests: steady load (a few hundred requests/s), not a stress test. */
const REQUEST_PAUSE_MS = 10
const EPHEMERAL_SERVICES = 20
const IDLE_TTL_MS = 2_000

/** Thresholds above which a slope is flagged (with a fit good enough to mean something). */
const LEAK_SLOPE: Readonly<Record<Metric, number>> = { heap: 1, rss: 5, fds: 1, handles: 1 }
const LEAK_MIN_R2 = 0.5
/** Fitted window below which heap and RSS slopes are indicative only (see the flags below). */
const MIN_FIT_MINUTES = 2

type Metric = 'heap' | 'rss' | 'fds' | 'handles'
const METRICS: readonly { key: Metric; label: string; unit: string }[] = [
  { key: 'heap', label: 'heap used (after GC)', unit: 'MB' },
  { key: 'rss', label: 'RSS', unit: 'MB' },
  { key: 'fds', label: 'open file descriptors', unit: 'fds' },
  { key: 'handles', label: 'active handles', unit: 'handles' },
]

interface Sample {
  /** Minutes since the load started. */
  readonly t: number
  readonly heap: number
  readonly rss: number
  readonly fds: number
  readonly handles: number
}

interface Fit {
  readonly slope: number
  readonly intercept: number
  readonly r2: number
}

/** Least squares of value over t (minutes): slope per minute and R². */
export function leastSquares(points: readonly (readonly [number, number])[]): Fit {
  const n = points.length
  if (n < 2) return { slope: Number.NaN, intercept: Number.NaN, r2: Number.NaN }
  let sx = 0
  let sy = 0
  for (const [x, y] of points) {
    sx += x
    sy += y
  }
  const mx = sx / n
  const my = sy / n
  let sxx = 0
  let sxy = 0
  let syy = 0
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2
    sxy += (x - mx) * (y - my)
    syy += (y - my) ** 2
  }
  const slope = sxx === 0 ? Number.NaN : sxy / sxx
  // A perfectly flat series explains nothing and leaks nothing: R² 0.
  const r2 = syy === 0 || sxx === 0 ? 0 : (sxy * sxy) / (sxx * syy)
  return { slope, intercept: my - slope * mx, r2 }
}

/** `global.gc` without starting node with --expose-gc: heap samples after a full collection. */
function gcFunction(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length
  } catch {
    return Number.NaN // not Linux
  }
}

interface Target {
  readonly name: string
  readonly wf: Wayfind
  put(id: string, port: number, seq: number): Promise<unknown>
  remove(id: string): Promise<unknown>
}

export async function run(options: SoakOptions): Promise<BenchOutcome> {
  const durationMs =
    options.minutes !== undefined ? options.minutes * 60_000 : options.quick ? 25_000 : 60_000
  const sampleEveryMs = Math.min(5_000, Math.max(500, Math.round(durationMs / 120)))
  // Connections, JIT and V8's heap sizing settle first: the fit starts after this.
  const warmupMs = Math.max(5_000, durationMs * 0.15)
  const gc = gcFunction()
  const helpers: HelperProcess[] = []
  let etcdServer: EtcdServer | undefined
  const clients: Wayfind[] = []
  try {
    const backends = await HelperProcess.start(
      new URL('./lib/soak-backends.ts', import.meta.url).pathname,
      ['4'],
    )
    helpers.push(backends.helper)
    const ports = backends.ready.ports as number[]
    etcdServer = await startEtcd()
    const writer = await HelperProcess.start(
      new URL('./lib/etcd-writer.ts', import.meta.url).pathname,
      [etcdServer.host],
    )
    helpers.push(writer.helper)
    const consulProc = await HelperProcess.start(
      new URL('./lib/consul-server-process.ts', import.meta.url).pathname,
    )
    helpers.push(consulProc.helper)

    gc()
    const baseline = snapshot(0)

    const mem = memoryRegistry()
    const make = (registry: Parameters<typeof createWayfind>[0]): Wayfind => {
      const wf = createWayfind({ ...registry, idleTtlMs: IDLE_TTL_MS })
      clients.push(wf)
      return wf
    }
    const targets: Target[] = [
      {
        name: 'memory',
        wf: make({ registry: mem }),
        put: (id, port, seq) =>
          Promise.resolve(
            mem.put(SERVICE, { id, host: '127.0.0.1', port, meta: { seq: String(seq) } }),
          ),
        remove: (id) => Promise.resolve(mem.remove(SERVICE, id)),
      },
      {
        name: 'etcd',
        wf: make({ registry: etcd({ hosts: [etcdServer.host] }) }),
        put: (id, port, seq) =>
          writer.helper.request({
            type: 'put',
            key: `/services/${SERVICE}/${id}`,
            service: SERVICE,
            instanceId: id,
            port,
            seq,
          }),
        remove: (id) =>
          writer.helper.request({ type: 'delete', key: `/services/${SERVICE}/${id}` }),
      },
      {
        name: 'consul',
        wf: make({ registry: consul({ url: consulProc.ready.url as string }) }),
        put: (id, port, seq) =>
          consulProc.helper.request({
            type: 'register',
            service: SERVICE,
            instanceId: id,
            port,
            seq,
          }),
        remove: (id) => consulProc.helper.request({ type: 'remove', instanceId: id }),
      },
    ]
    const pickPort = (): number => ports[Math.floor(Math.random() * ports.length)] as number
    for (const t of targets) {
      for (let i = 0; i < STABLE; i++)
        await t.put(`s${String(i)}`, ports[i % ports.length] as number, 0)
      await t.wf.resolve(SERVICE, { timeoutMs: 15_000 })
    }

    const state = { running: true }
    const stats = new Map(
      targets.map((t) => [
        t.name,
        { ok: 0, failed: 0, failures: new Map<string, number>(), churn: 0, changes: 0 },
      ]),
    )
    for (const t of targets)
      t.wf.events.on('change', () => {
        ;(stats.get(t.name) as { changes: number }).changes++
      })
    const loops: Promise<void>[] = []
    for (const t of targets) {
      const st = stats.get(t.name) as NonNullable<ReturnType<typeof stats.get>>
      // Churn: register, update (new meta), deregister, on a small id pool.
      loops.push(
        (async () => {
          let seq = 0
          while (state.running) {
            const id = `c${String(Math.floor(Math.random() * CHURN_IDS))}`
            seq++
            if (Math.random() < 0.35) await t.remove(id)
            else await t.put(id, pickPort(), seq)
            st.churn++
            await delay(CHURN_EVERY_MS)
          }
        })(),
      )
      // Watches that come and go: each short-lived service is touched now and then and goes idle.
      loops.push(
        (async () => {
          let k = 0
          while (state.running) {
            t.wf.instances(`soak-eph-${String(k++ % EPHEMERAL_SERVICES)}`)
            await delay(250)
          }
        })(),
      )
      for (let l = 0; l < LOOPS_PER_CLIENT; l++)
        loops.push(
          (async () => {
            while (state.running) {
              try {
                const res = await request(`http://${SERVICE}/`, { dispatcher: t.wf.dispatcher })
                await res.body.dump()
                if (res.statusCode === 200) st.ok++
                else {
                  st.failed++
                  st.failures.set(
                    String(res.statusCode),
                    (st.failures.get(String(res.statusCode)) ?? 0) + 1,
                  )
                }
              } catch (err) {
                st.failed++
                const code = (err as { code?: string }).code ?? (err as Error).name
                st.failures.set(code, (st.failures.get(code) ?? 0) + 1)
              }
              await delay(REQUEST_PAUSE_MS)
            }
          })(),
        )
    }

    const started = performance.now()
    const samples: Sample[] = []
    note(
      `  soaking for ${(durationMs / 1000).toFixed(0)} s (sample every ${sampleEveryMs} ms, fit after ${(warmupMs / 1000).toFixed(0)} s)...`,
    )
    let handleTypes: Record<string, number> = {}
    while (performance.now() - started < durationMs) {
      await delay(sampleEveryMs)
      gc()
      samples.push(snapshot((performance.now() - started) / 60_000))
      handleTypes = countTypes(process.getActiveResourcesInfo())
    }
    state.running = false
    await Promise.all(loops)
    const elapsedS = (performance.now() - started) / 1000
    for (const wf of clients.splice(0)) await wf.close()
    // Sockets closed by close() go away on the next turns.
    await delay(200)
    gc()
    const afterClose = snapshot(elapsedS / 60)

    const fitted = samples.filter((s) => s.t * 60_000 >= warmupMs)
    const fits = Object.fromEntries(
      METRICS.map((m) => [m.key, leastSquares(fitted.map((s) => [s.t, s[m.key]] as const))]),
    ) as Record<Metric, Fit>
    // Heap and RSS keep growing for a minute or two while V8 compiles and sizes its heap (heap
    // snapshots of a churning client 90 s apart differ only in compiled code): in a shorter
    // window only a slope ten times the threshold is flagged. Descriptors and handles are exact
    // counts and are judged at any length.
    const fittedMinutes = (durationMs - warmupMs) / 60_000
    const judged = (m: Metric): boolean =>
      fittedMinutes >= MIN_FIT_MINUTES || m === 'fds' || m === 'handles'
    const flags = METRICS.filter((m) => {
      const f = fits[m.key]
      const limit = LEAK_SLOPE[m.key] * (judged(m.key) ? 1 : 10)
      return f.slope > limit && f.r2 > LEAK_MIN_R2
    }).map((m) => m.key)
    const residual = {
      fds: afterClose.fds - baseline.fds,
      handles: afterClose.handles - baseline.handles,
    }
    const first = fitted[0] ?? samples[0]
    const last = samples.at(-1)
    const num = (v: number | undefined, d = 1): string =>
      v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d)
    printTable(
      `Soak: ${elapsedS.toFixed(0)} s of churn + steady requests, 3 clients (memory, etcd, Consul)`,
      ['metric', 'before', 'after warm-up', 'end', 'after close', 'slope /min', 'R²', ''],
      METRICS.map((m) => {
        const d = m.unit === 'MB' ? 1 : 0
        const f = fits[m.key]
        return [
          `${m.label} (${m.unit})`,
          num(baseline[m.key], d),
          num(first?.[m.key], d),
          num(last?.[m.key], d),
          num(afterClose[m.key], d),
          `${f.slope >= 0 ? '+' : ''}${num(f.slope, 2)}`,
          num(f.r2, 2),
          flags.includes(m.key) ? 'LEAK?' : judged(m.key) ? 'flat' : 'short run',
        ]
      }),
    )
    printTable(
      'Soak: work done',
      ['client', 'requests ok', 'failed', 'req/s', 'churn ops', 'change events'],
      targets.map((t) => {
        const st = stats.get(t.name) as NonNullable<ReturnType<typeof stats.get>>
        return [
          t.name,
          String(st.ok),
          `${st.failed}${st.failures.size > 0 ? ` (${[...st.failures].map(([k, v]) => `${k}×${v}`).join(' ')})` : ''}`,
          (st.ok / elapsedS).toFixed(0),
          String(st.churn),
          String(st.changes),
        ]
      }),
    )
    note(
      `  active handles at the last sample: ${Object.entries(handleTypes)
        .map(([k, v]) => `${k}×${v}`)
        .join(' ')}`,
    )
    note(
      `  after close vs before the clients: ${residual.fds >= 0 ? '+' : ''}${residual.fds} fds, ${residual.handles >= 0 ? '+' : ''}${residual.handles} handles`,
    )
    if (flags.length > 0)
      note(
        `  FLAGGED (slope above its threshold with R² > ${LEAK_MIN_R2}): ${flags.join(', ')}; run longer (--minutes) to tell a leak from warm-up`,
      )
    writeResults(
      'soak',
      {
        durationMs: Math.round(elapsedS * 1000),
        sampleEveryMs,
        warmupMs,
        slopesPerMinute: Object.fromEntries(
          METRICS.map((m) => [m.key, { ...fits[m.key], unit: `${m.unit}/min` }]),
        ),
        flagged: flags,
        thresholdsPerMinute: LEAK_SLOPE,
        fittedMinutes,
        baseline,
        afterClose,
        residual,
        handleTypesAtEnd: handleTypes,
        work: Object.fromEntries(
          [...stats].map(([k, v]) => [k, { ...v, failures: Object.fromEntries(v.failures) }]),
        ),
        samples,
      },
      {
        'soak.svg': seriesSvg(
          `Soak: ${elapsedS.toFixed(0)} s, memory + etcd + Consul clients under churn and load`,
          METRICS.map((m) => ({
            label: m.label,
            unit: m.unit,
            points: samples.map((s) => [s.t, s[m.key]] as const),
            fit: {
              from: warmupMs / 60_000,
              slope: fits[m.key].slope,
              intercept: fits[m.key].intercept,
            },
          })),
        ),
      },
    )
    return {
      name: 'soak',
      checks: [check('soak: slopes flagged as possible leaks', flags.length, '<=', 0, '')],
    }
  } finally {
    for (const wf of clients) await wf.close().catch(() => undefined)
    for (const h of helpers) await h.stop().catch(() => undefined)
    await etcdServer?.remove()
  }
}

function snapshot(t: number): Sample {
  const mem = process.memoryUsage()
  return {
    t,
    heap: mem.heapUsed / 2 ** 20,
    rss: mem.rss / 2 ** 20,
    fds: openFds(),
    handles: process.getActiveResourcesInfo().length,
  }
}

function countTypes(list: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const t of list) out[t] = (out[t] ?? 0) + 1
  return out
}

// Standalone: npx tsx bench/soak.ts [--minutes N] [--quick]
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: { minutes: { type: 'string' }, quick: { type: 'boolean', default: false } },
  })
  const minutes = values.minutes === undefined ? undefined : Number(values.minutes)
  if (minutes !== undefined && !(minutes > 0)) {
    process.stderr.write(`--minutes must be a positive number, got ${String(values.minutes)}\n`)
    process.exit(2)
  }
  run({ quick: values.quick, ...(minutes === undefined ? {} : { minutes }) }).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exit(1)
    },
  )
}
