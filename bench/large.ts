/**
 * Large services.
 *
 * 1. One update of a 5,000-instance service, the way the Consul watch and the service cache do
 *    it: JSON.parse of the `/v1/health/service` body, mapping to instances, then the snapshot
 *    through a real client (content diff, picker build, pool bookkeeping, change event) —
 *    against a bare `JSON.parse` of the same body. Target ≤ 1.5×. Each update really changes
 *    50 instances (two bodies alternate), so the diff and the picker build do their full work.
 * 2. etcd initial list of 5,000 keys: a fresh client's `resolve()` against a fresh raw etcd3
 *    client's prefix Range plus a JSON.parse of every value, both connecting from scratch.
 */
import { Etcd3 } from 'etcd3'
import { createWayfind, etcd, type RegistryProvider, type WatchListener } from '../src/index.js'
import { mapHealthEntries } from '../src/registry/consul/mapping.js'
import { HelperProcess } from './lib/child.js'
import { startEtcd } from './lib/etcd.js'
import {
  check,
  ms,
  printTable,
  writeResults,
  x,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { median } from './lib/stats.js'
import { barsSvg } from './lib/svg.js'

let N = 5_000
const SERVICE = 'big'

/**
 * A realistic `/v1/health/service/big` answer (docs/design/consul.md#response-shapes), `variant`
 * shifts 50 ports.
 */
function healthBody(variant: number): string {
  const entries = []
  for (let k = 0; k < N; k++) {
    const node = `node-${String(k % 500)}`
    const nodeAddr = `10.0.${String(Math.floor(k / 250) % 250)}.${String(k % 250)}`
    const idx = 1000 + k
    entries.push({
      Node: {
        ID: `0000-${String(k)}`,
        Node: node,
        Address: nodeAddr,
        Datacenter: 'dc1',
        TaggedAddresses: { lan: nodeAddr, lan_ipv4: nodeAddr, wan: nodeAddr, wan_ipv4: nodeAddr },
        Meta: { 'consul-network-segment': '' },
        CreateIndex: idx,
        ModifyIndex: idx,
      },
      Service: {
        ID: `${SERVICE}-${String(k)}`,
        Service: SERVICE,
        Tags: ['v2', 'http'],
        Address: `10.1.${String(Math.floor(k / 250) % 250)}.${String(k % 250)}`,
        TaggedAddresses: {},
        Meta: { version: '2.4.1', zone: `zone-${String(k % 3)}` },
        Port: 8080 + (k < 50 ? variant : 0),
        Weights: { Passing: 1, Warning: 1 },
        EnableTagOverride: false,
        Proxy: { Mode: '', MeshGateway: {}, Expose: {} },
        Connect: {},
        CreateIndex: idx,
        ModifyIndex: idx + variant,
      },
      Checks: [
        {
          Node: node,
          CheckID: 'serfHealth',
          Name: 'Serf Health Status',
          Status: 'passing',
          Notes: '',
          Output: 'Agent alive and reachable',
          ServiceID: '',
          ServiceName: '',
          ServiceTags: [],
          Type: '',
          Interval: '',
          Timeout: '',
          ExposedPort: 0,
          CreateIndex: idx,
          ModifyIndex: idx,
        },
        {
          Node: node,
          CheckID: `service:${SERVICE}-${String(k)}`,
          Name: `Service '${SERVICE}' check`,
          Status: 'passing',
          Notes: '',
          Output: 'HTTP GET http://x/health: 200 OK Output: {"status":"UP"}',
          ServiceID: `${SERVICE}-${String(k)}`,
          ServiceName: SERVICE,
          ServiceTags: ['v2', 'http'],
          Type: 'http',
          Interval: '10s',
          Timeout: '5s',
          ExposedPort: 0,
          CreateIndex: idx,
          ModifyIndex: idx,
        },
      ],
    })
  }
  return JSON.stringify(entries)
}

async function updateBench(
  quick: boolean,
): Promise<{ baseMs: number; fullMs: number; ratio: number; bytes: number }> {
  const bodies = [healthBody(0), healthBody(1)]
  let listener: WatchListener | undefined
  // A provider that hands us its listener: the snapshot then goes through the real client.
  const provider: RegistryProvider = {
    name: 'bench',
    watch(_service, l) {
      listener = l
    },
    close: () => Promise.resolve(),
  }
  const wf = createWayfind({ registry: provider })
  let changes = 0
  wf.events.on('change', () => {
    changes++
  })
  try {
    wf.instances(SERVICE)
    if (listener === undefined) throw new Error('the client did not start a watch')
    const l = listener
    let revision = 0
    // The picker is built on the first pick after a change, so the update awaits resolve(),
    // which takes the picker as the first request after the change would: the picker build
    // stays in the measured work.
    const full = async (body: string): Promise<void> => {
      const entries = JSON.parse(body) as unknown[]
      const { instances } = mapHealthEntries(entries, {
        service: SERVICE,
        passingOnly: true,
        addressKind: 'default',
      })
      l.onSnapshot({ service: SERVICE, instances, revision: String(++revision) })
      await wf.resolve(SERVICE)
    }
    let sink = 0
    // Async too, so that both sides pay the same promise hop.
    const base = async (body: string): Promise<void> => {
      sink += (JSON.parse(body) as unknown[]).length
      await Promise.resolve()
    }
    const time = async (fn: (b: string) => Promise<void>, i: number): Promise<number> => {
      const t0 = performance.now()
      await fn(bodies[i % 2] ?? '')
      return performance.now() - t0
    }
    // Warm-up: JIT and the first (all-added) snapshot.
    for (let i = 0; i < (quick ? 2 : 4); i++) {
      await full(bodies[i % 2] ?? '')
      await base(bodies[i % 2] ?? '')
    }
    const rounds = quick ? 2 : 9
    const iters = quick ? 2 : 6
    const ratios: number[] = []
    const baseAll: number[] = []
    const fullAll: number[] = []
    let i = 0
    for (let r = 0; r < rounds; r++) {
      const b: number[] = []
      const f: number[] = []
      for (let k = 0; k < iters; k++) {
        // Alternate which goes first, so neither always runs right after a GC-heavy sibling.
        if ((r + k) % 2 === 0) {
          b.push(await time(base, i))
          f.push(await time(full, i))
        } else {
          f.push(await time(full, i))
          b.push(await time(base, i))
        }
        i++
      }
      ratios.push(median(f) / median(b))
      baseAll.push(...b)
      fullAll.push(...f)
    }
    if (sink === 0 || changes < rounds * iters)
      throw new Error(`updates did not all produce change events (${changes})`)
    return {
      baseMs: median(baseAll),
      fullMs: median(fullAll),
      ratio: Math.round(median(ratios) * 100) / 100,
      bytes: bodies[0]?.length ?? 0,
    }
  } finally {
    await wf.close()
  }
}

async function etcdListBench(
  quick: boolean,
): Promise<{ rawMs: number; wayfindMs: number; ratio: number }> {
  const server = await startEtcd()
  let writer: HelperProcess | undefined
  try {
    writer = (
      await HelperProcess.start(new URL('./lib/etcd-writer.ts', import.meta.url).pathname, [
        server.host,
      ])
    ).helper
    await writer.request(
      { type: 'fill', prefix: `/services/${SERVICE}/`, service: SERVICE, count: N },
      60_000,
    )
    const raw = async (): Promise<number> => {
      const client = new Etcd3({ hosts: server.host })
      try {
        const t0 = performance.now()
        const res = await client.getAll().prefix(`/services/${SERVICE}/`).exec()
        let n = 0
        for (const kv of res.kvs)
          if ((JSON.parse(kv.value.toString('utf8')) as { port?: number }).port !== undefined) n++
        const t = performance.now() - t0
        if (n !== N) throw new Error(`raw list saw ${n} instances`)
        return t
      } finally {
        client.close()
      }
    }
    const viaWayfind = async (): Promise<number> => {
      const wf = createWayfind({ registry: etcd({ hosts: [server.host] }) })
      try {
        const t0 = performance.now()
        const instances = await wf.resolve(SERVICE, { timeoutMs: 30_000 })
        const t = performance.now() - t0
        if (instances.length !== N)
          throw new Error(`wayfind resolved ${instances.length} instances`)
        return t
      } finally {
        await wf.close()
      }
    }
    // Warm-up pairs: the first lists of each side ran up to twice as long as later ones (JIT,
    // the heap growing to hold 5,000 decoded values), in both clients alike; with one pair the
    // first measured rounds still carried it, and a round's ratio swung by half either way.
    for (let k = 0; k < (quick ? 1 : 4); k++) {
      await raw()
      await viaWayfind()
    }
    const rounds = quick ? 1 : 11
    const r: number[] = []
    const w: number[] = []
    const ratios: number[] = []
    for (let k = 0; k < rounds; k++) {
      let a: number
      let b: number
      if (k % 2 === 0) {
        a = await raw()
        b = await viaWayfind()
      } else {
        b = await viaWayfind()
        a = await raw()
      }
      r.push(a)
      w.push(b)
      ratios.push(b / a)
    }
    return { rawMs: median(r), wayfindMs: median(w), ratio: Math.round(median(ratios) * 100) / 100 }
  } finally {
    await writer?.stop()
    await server.remove()
  }
}

export async function run({ quick }: BenchOptions): Promise<BenchOutcome> {
  // The smoke test only checks that the path works; the full run measures 5,000.
  N = quick ? 1_000 : 5_000
  const u = await updateBench(quick)
  const e = await etcdListBench(quick)
  printTable(
    `Large services: ${N} instances (medians of interleaved rounds)`,
    ['operation', 'wayfind', 'baseline', 'ratio'],
    [
      [
        `one Consul update (${(u.bytes / 1e6).toFixed(1)} MB body): parse+map+diff+picker vs JSON.parse`,
        ms(u.fullMs),
        ms(u.baseMs),
        x(u.ratio),
      ],
      [
        `etcd initial list of ${N} keys: resolve() vs raw Range + JSON.parse`,
        ms(e.wayfindMs),
        ms(e.rawMs),
        x(e.ratio),
      ],
    ],
  )
  writeResults(
    'large',
    { instances: N, update: u, etcdList: e },
    {
      'large.svg': barsSvg(`Large services (${N} instances)`, 'ms', [
        { label: 'JSON.parse of the body', value: u.baseMs },
        { label: 'wayfind update (full path)', value: u.fullMs },
        { label: 'etcd raw Range + parse', value: e.rawMs },
        { label: 'etcd wayfind resolve()', value: e.wayfindMs },
      ]),
    },
  )
  return {
    name: 'large',
    checks: [
      check(`${N}-instance update vs JSON.parse`, u.ratio, '<=', 1.5),
      check(`etcd ${N}-key initial list vs raw Range + parse`, e.ratio, '<=', 1.5),
    ],
  }
}
