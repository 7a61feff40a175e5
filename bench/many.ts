/**
 * Many services: one client watching 1,000 services of 10 instances each (no metadata).
 * - time until every service resolved;
 * - connections: on etcd, TCP connections through a counting proxy and the gRPC Watch streams
 *   etcd itself reports (`/metrics`); on Consul, the peak of open connections the test server
 *   saw, against the client's budget (`maxConnections`, default 64; Consul refuses > 200);
 * - whether the client keeps up: the registry grows every service from 1 to 5 instances, then
 *   to 10; services the client has not seen grow within 60 s are counted (target 0);
 * - retained heap (after GC) after each step: the second difference over the instances the
 *   client added is the cost of one instance (target ≤ 2 KB, no metadata); the 1-instance
 *   footprint minus that is the fixed cost of a watched service. The whole footprint per
 *   instance is printed too.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { consul, createWayfind, etcd, type Wayfind } from '../src/index.js'
import { TcpProxy } from '../test/support/tcp-proxy.js'
import { HelperProcess } from './lib/child.js'
import { startEtcd } from './lib/etcd.js'
import {
  check,
  ms,
  note,
  printTable,
  writeResults,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { barsSvg } from './lib/svg.js'

const PER_SERVICE = 10
/** How long the client may take to see a registry-wide growth step. */
const GROW_DEADLINE_MS = 60_000
const ROOT = '/services/'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

interface ManyResult {
  readonly registry: string
  readonly services: number
  readonly instances: number
  readonly resolveAllMs: number
  readonly connections: string
  /** Whole footprint / instances (5 per service). */
  readonly bytesPerInstance: number
  /** Cost of one more instance. */
  readonly marginalBytesPerInstance: number
  /** Fixed cost of one watched service. */
  readonly fixedBytesPerService: number
  /** Services whose growth the client had not seen after GROW_DEADLINE_MS. */
  readonly staleServices: number
}

/**
 * Resolves `services` services of one instance each (timed), then has the registry grow them
 * to PER_SERVICE / 2 and PER_SERVICE instances, measuring the retained heap after each step.
 */
async function measure(
  create: () => Wayfind,
  services: number,
  grow: (perService: number) => Promise<unknown>,
): Promise<{
  ms: number
  stale: number
  bytesPerInstance: number
  marginal: number
  fixed: number
  wf: Wayfind
}> {
  const names = Array.from({ length: services }, (_, i) => `svc-${String(i)}`)
  const before = heapAfterGc()
  const wf = create()
  const t0 = performance.now()
  const resolved = await Promise.all(names.map((n) => wf.resolve(n, { timeoutMs: 60_000 })))
  const elapsed = performance.now() - t0
  const total = resolved.reduce((a, r) => a + r.length, 0)
  if (total !== services) throw new Error(`resolved ${total} instances, expected ${services}`)
  resolved.length = 0
  const count = (): number => names.reduce((acc, n) => acc + wf.instances(n).length, 0)
  /**
   * Grows every service to `n` instances and waits (at most GROW_DEADLINE_MS) until the client
   * saw it. A service that never catches up is reported, not fatal: the heap is then divided by
   * the instances the client really holds.
   */
  const growTo = async (n: number): Promise<{ heap: number; instances: number; stale: number }> => {
    const pending = new Set(names)
    const grown = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        off()
        resolve()
      }, GROW_DEADLINE_MS)
      const off = wf.events.on('change', (e) => {
        if (e.instances.length === n) pending.delete(e.service)
        if (pending.size === 0) {
          clearTimeout(timer)
          off()
          resolve()
        }
      })
    })
    await grow(n)
    await grown
    return { heap: heapAfterGc(), instances: count(), stale: pending.size }
  }
  // Two growth steps: the first one also absorbs one-off allocations (buffers, JIT, pools
  // sized on first use), so the marginal cost comes from the second.
  const half = PER_SERVICE / 2
  const t1 = performance.now()
  const h1 = { heap: heapAfterGc(), instances: count() }
  const hHalf = await growTo(half)
  const hFull = await growTo(PER_SERVICE)
  const growMs = performance.now() - t1
  note(
    `  ${services} services resolved in ${ms(elapsed)}; grown to ${PER_SERVICE} instances each in ${ms(growMs)}` +
      `; not up to date after ${GROW_DEADLINE_MS / 1000} s: ${hHalf.stale} services at step 1..${half} ` +
      `(client held ${hHalf.instances}/${services * half} instances), ${hFull.stale} at step ${half}..${PER_SERVICE} ` +
      `(held ${hFull.instances}/${services * PER_SERVICE})`,
  )
  const marginal = (hFull.heap - hHalf.heap) / Math.max(1, hFull.instances - hHalf.instances)
  return {
    ms: elapsed,
    stale: Math.max(hHalf.stale, hFull.stale),
    bytesPerInstance: (hFull.heap - before) / Math.max(1, hFull.instances),
    marginal,
    fixed: (h1.heap - before) / services - marginal,
    wf,
  }
}

async function onEtcd(services: number): Promise<ManyResult> {
  const server = await startEtcd()
  const proxy = await TcpProxy.start({ port: server.clientPort })
  let writer: HelperProcess | undefined
  let wf: Wayfind | undefined
  try {
    writer = (
      await HelperProcess.start(new URL('./lib/etcd-writer.ts', import.meta.url).pathname, [
        server.host,
      ])
    ).helper
    const w = writer
    await w.request({ type: 'fillMany', root: ROOT, services, perService: 1 }, 120_000)
    const m = await measure(
      () => createWayfind({ registry: etcd({ hosts: [proxy.host] }) }),
      services,
      (n) => w.request({ type: 'fillMany', root: ROOT, services, perService: n }, 120_000),
    )
    wf = m.wf
    const metrics = await (await fetch(`http://${server.host}/metrics`)).text()
    const gauge = (name: string): number =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN)
    const streams = gauge('etcd_debugging_mvcc_watch_stream_total')
    const watchers = gauge('etcd_debugging_mvcc_watcher_total')
    return {
      registry: 'etcd',
      services,
      instances: services * PER_SERVICE,
      resolveAllMs: m.ms,
      connections: `${proxy.connections} TCP, ${streams} watch stream(s), ${watchers} watchers`,
      bytesPerInstance: m.bytesPerInstance,
      marginalBytesPerInstance: m.marginal,
      fixedBytesPerService: m.fixed,
      staleServices: m.stale,
    }
  } finally {
    await wf?.close()
    await writer?.stop()
    await proxy.close()
    await server.remove()
  }
}

async function onConsul(services: number): Promise<ManyResult & { peak: number; budget: number }> {
  const { helper, ready } = await HelperProcess.start(
    new URL('./lib/consul-server-process.ts', import.meta.url).pathname,
  )
  let wf: Wayfind | undefined
  try {
    await helper.request({ type: 'fillMany', services, perService: 1 }, 120_000)
    const budget = 64
    const url = ready.url as string
    const m = await measure(
      () => createWayfind({ registry: consul({ url, maxConnections: budget }) }),
      services,
      (n) => helper.request({ type: 'fillMany', services, perService: n }, 120_000),
    )
    wf = m.wf
    const stats = (await helper.request({ type: 'stats' })) as {
      open: number
      peak: number
      rejected: number
    }
    return {
      registry: 'consul',
      services,
      instances: services * PER_SERVICE,
      resolveAllMs: m.ms,
      connections: `peak ${stats.peak} TCP (budget ${budget}; Consul's cap 200), ${stats.rejected} refused`,
      bytesPerInstance: m.bytesPerInstance,
      marginalBytesPerInstance: m.marginal,
      fixedBytesPerService: m.fixed,
      staleServices: m.stale,
      peak: stats.peak,
      budget,
    }
  } finally {
    await wf?.close()
    await helper.stop()
  }
}

export async function run({ quick }: BenchOptions): Promise<BenchOutcome> {
  const services = quick ? 50 : 1_000
  const e = await onEtcd(services)
  const c = await onConsul(services)
  const kb = (b: number): string => `${(b / 1024).toFixed(2)} KB`
  printTable(
    `Many services: ${services} services × ${PER_SERVICE} instances, one client`,
    [
      'registry',
      'all resolved',
      'connections',
      'heap per extra instance',
      'fixed heap per service',
      'total / instance',
    ],
    [e, c].map((r) => [
      r.registry,
      ms(r.resolveAllMs),
      r.connections,
      kb(r.marginalBytesPerInstance),
      kb(r.fixedBytesPerService),
      kb(r.bytesPerInstance),
    ]),
  )
  writeResults(
    'many',
    { perService: PER_SERVICE, etcd: e, consul: c },
    {
      'many.svg': barsSvg(
        `Retained heap (${services} services × ${PER_SERVICE} instances)`,
        'bytes',
        [
          { label: 'etcd: per extra instance', value: e.marginalBytesPerInstance },
          { label: 'consul: per extra instance', value: c.marginalBytesPerInstance },
          { label: 'target per instance', value: 2048 },
          { label: 'etcd: fixed per service', value: e.fixedBytesPerService },
          { label: 'consul: fixed per service', value: c.fixedBytesPerService },
        ],
      ),
    },
  )
  return {
    name: 'many',
    checks: [
      check('etcd heap per extra instance (KB)', e.marginalBytesPerInstance / 1024, '<=', 2, ' KB'),
      check(
        'consul heap per extra instance (KB)',
        c.marginalBytesPerInstance / 1024,
        '<=',
        2,
        ' KB',
      ),
      check(
        'etcd services not up to date after a registry-wide change',
        e.staleServices,
        '<=',
        0,
        '',
      ),
      check(
        'consul services not up to date after a registry-wide change',
        c.staleServices,
        '<=',
        0,
        '',
      ),
      check(
        'etcd watch streams (gRPC)',
        Number(/(\d+) watch stream/.exec(e.connections)?.[1] ?? NaN),
        '<=',
        1,
        '',
      ),
      check(
        'etcd TCP connections',
        Number(/^(\d+) TCP/.exec(e.connections)?.[1] ?? NaN),
        '<=',
        1,
        '',
      ),
      check('consul peak connections vs budget', c.peak, '<=', c.budget, ''),
    ],
  }
}
