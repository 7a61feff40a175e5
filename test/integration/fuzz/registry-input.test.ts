/**
 * Property-based fuzzing (fast-check) of what registries hand us: Consul bodies and headers
 * through the real HTTP path (a node:http server on loopback), the Consul mapping and answer
 * policy, and etcd values through the mapping and a real etcd watch. The properties:
 * - never a crash or an unhandled rejection;
 * - never a wiped set: a non-empty set stays non-empty (the generators never produce a valid
 *   empty answer, so no answer may empty it);
 * - every fault is a typed WayfindError with a stable code and a bounded message;
 * - a bad X-Consul-Index is never sent back.
 *
 * CI runs a short budget. `WAYFIND_FUZZ_RUNS=10 npx vitest run test/integration/fuzz` multiplies
 * every run count by 10; a failure prints fast-check's seed and path, and
 * `WAYFIND_FUZZ_SEED=<seed>` replays it.
 */
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Etcd3 } from 'etcd3'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isWayfindError, type WayfindError } from '../../../src/errors.js'
import { createInstance, type Instance } from '../../../src/instance.js'
import { applyAnswer } from '../../../src/registry/answer-policy.js'
import { mapHealthEntries } from '../../../src/registry/consul/mapping.js'
import { consul } from '../../../src/registry/consul/provider.js'
import { decodeEntry, defaultEtcdCodec } from '../../../src/registry/etcd/mapping.js'
import { parseEtcdOptions } from '../../../src/registry/etcd/options.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import type { ServiceSnapshot, WatchListener } from '../../../src/registry/provider.js'
import { EtcdServer } from '../../support/etcd.js'
import { withDeadline } from '../../support/wait.js'

const SCALE = Math.max(1, Number(process.env.WAYFIND_FUZZ_RUNS ?? '1') || 1)
const SEED =
  process.env.WAYFIND_FUZZ_SEED === undefined ? undefined : Number(process.env.WAYFIND_FUZZ_SEED)
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: numRuns * SCALE,
  ...(SEED === undefined ? {} : { seed: SEED }),
})

/** A longer run gets a proportionally longer test timeout. */
const TIMEOUT_MS = 60_000 * SCALE

const CODES = new Set<string>(Object.values(ErrorCode))
const MAX_INDEX = 2n ** 64n - 1n

/** A fault must be a typed error with a stable code and a message fit for a log line. */
function checkError(e: unknown): void {
  expect(isWayfindError(e), String(e)).toBe(true)
  const error = e as WayfindError
  expect(CODES.has(error.code), error.code).toBe(true)
  expect(error.message.length, error.message.slice(0, 200)).toBeLessThan(2_000)
  if (error.code === ErrorCode.MALFORMED_INSTANCE)
    expect(error).toMatchObject({ field: expect.any(String) as string })
}

// Unhandled rejections and exceptions anywhere during a property fail it.
const stray: unknown[] = []
const onStray = (err: unknown): void => {
  stray.push(err)
}
beforeAll(() => {
  process.on('unhandledRejection', onStray)
  process.on('uncaughtException', onStray)
})
afterAll(() => {
  process.off('unhandledRejection', onStray)
  process.off('uncaughtException', onStray)
})

// ---- Consul generators ------------------------------------------------------------------------

const json = fc.jsonValue({ maxDepth: 2 })
const nodeName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('n1', 'n2') }, json)
const serviceId = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('a', 'b', 'c') }, json)
const host = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('10.0.0.1', 'svc-1.internal', '::1', '') },
  fc.constantFrom('bad host', 'h\uFFFDst', 'x'.repeat(300), 'tab\there', '[::1]', '…'),
  fc.string({ maxLength: 20 }),
  json,
)
const port = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 65_535 }) },
  fc.constantFrom(0, -1, 70_000, '8080', 1.5, null),
  json,
)
// Never "critical" or "warning": those leave an instance out on purpose, which may really empty
// a set; this fuzz only produces answers that must not.
const status = fc.constantFrom('passing', 'passing', 'maintenance', '', 'PASSING', null, 7)

const goodEntry = fc
  .record({ node: fc.constantFrom('n1', 'n2'), id: fc.constantFrom('a', 'b', 'c') })
  .map(({ node, id }) => ({
    Node: { Node: node, Address: '10.0.0.1' },
    Service: { ID: id, Service: 'orders', Port: 8080, Tags: [], Meta: {} },
    Checks: [{ Status: 'passing' }],
  }))

const mutatedEntry = fc
  .record({
    node: nodeName,
    id: serviceId,
    address: host,
    nodeAddress: host,
    port,
    status,
    tags: fc.oneof(fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }), json),
    meta: fc.oneof(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })), json),
    weights: fc.oneof(fc.constant(undefined), json, fc.record({ Passing: json, Warning: json })),
    dropNode: fc.boolean(),
    dropService: fc.boolean(),
    checks: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false)),
  })
  .map((m) => {
    const entry: Record<string, unknown> = {}
    if (!m.dropNode) entry.Node = { Node: m.node, Address: m.nodeAddress }
    if (!m.dropService)
      entry.Service = {
        ID: m.id,
        Service: 'orders',
        Address: m.address,
        Port: m.port,
        Tags: m.tags,
        Meta: m.meta,
        ...(m.weights === undefined ? {} : { Weights: m.weights }),
      }
    entry.Checks = m.checks ? [{ Status: m.status }] : m.status
    return entry
  })

const entry = fc.oneof(
  { weight: 3, arbitrary: goodEntry },
  { weight: 5, arbitrary: mutatedEntry },
  { weight: 1, arbitrary: json },
  { weight: 1, arbitrary: fc.constant(null) },
)

/** About 300 KB of valid JSON: over the 256 KiB limit the HTTP property runs with. */
const HUGE = JSON.stringify([
  {
    Node: { Node: 'n1', Address: '10.0.0.1' },
    Service: { ID: 'a', Port: 1, Meta: { pad: 'p'.repeat(300_000) } },
  },
])

const body = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.array(entry, { minLength: 1, maxLength: 6 }).map((a) => JSON.stringify(a)),
  },
  {
    weight: 1,
    arbitrary: json
      .filter((v) => !(Array.isArray(v) && v.length === 0))
      .map((v) => JSON.stringify(v)),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constant(HUGE) },
)

const indexHeader = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: 1n, max: MAX_INDEX }).map(String) },
  fc.constantFrom('0', '-1', '18446744073709551616', 'abc', '', ' 12 ', '1e3', '9'.repeat(30)),
  fc.constant(undefined),
)

const answer = fc.record({
  status: fc.oneof({ weight: 12, arbitrary: fc.constant(200) }, fc.constantFrom(500, 429, 400)),
  index: indexHeader,
  body,
})
type Answer = typeof answer extends fc.Arbitrary<infer T> ? T : never

/** An agent that serves a script of answers; past its end it parks requests (a long poll). */
async function scriptedAgent(): Promise<{
  url: string
  load(script: Answer[]): void
  requests(): string[]
  waitForRequests(n: number): Promise<void>
  close(): Promise<void>
}> {
  let script: Answer[] = []
  let seen: string[] = []
  let waiter: { n: number; resolve: () => void } | undefined
  const server = http.createServer((req, res) => {
    seen.push(new URL(req.url ?? '/', 'http://x').searchParams.get('index') ?? '')
    if (waiter !== undefined && seen.length >= waiter.n) waiter.resolve()
    const step = script.shift()
    if (step === undefined) return
    res.statusCode = step.status
    if (step.index !== undefined) res.setHeader('X-Consul-Index', step.index)
    res.end(step.body)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    load(next) {
      script = [...next]
      seen = []
    },
    requests: () => seen,
    waitForRequests: (n) =>
      withDeadline(
        seen.length >= n
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              waiter = { n, resolve }
            }),
        10_000,
        `request #${n}`,
      ),
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

function recorder(): { listener: WatchListener; snapshots: ServiceSnapshot[]; errors: unknown[] } {
  const snapshots: ServiceSnapshot[] = []
  const errors: unknown[] = []
  return {
    listener: {
      onSnapshot: (s) => snapshots.push(s),
      onError: (e) => errors.push(e),
    },
    snapshots,
    errors,
  }
}

describe('fuzz: Consul answers', () => {
  it('mapping + answer policy: never throws, never empties a set, faults name their field', () => {
    const previous: Instance[] = [
      createInstance({ id: 'a', key: 'n1/a', service: 'orders', host: '10.0.0.1', port: 1 }),
    ]
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 8 }), (entries) => {
        const mapped = mapHealthEntries(entries, {
          service: 'orders',
          passingOnly: true,
          addressKind: 'default',
        })
        const out = applyAnswer(previous, {
          service: 'orders',
          ...mapped,
          faults: mapped.problems,
          entries: entries.length,
        })
        expect(out.instances.length).toBeGreaterThan(0)
        if (mapped.problems.length > 0) checkError(out.error)
        else expect(out.error).toBeUndefined()
        for (const p of mapped.problems) expect(p.reason.length).toBeLessThan(600)
      }),
      params(300),
    )
  })

  it(
    'the real HTTP path: no crash, no wiped set, typed errors, no bad index sent back',
    async () => {
      const agent = await scriptedAgent()
      try {
        await fc.assert(
          fc.asyncProperty(
            goodEntry,
            fc.array(answer, { minLength: 1, maxLength: 8 }),
            async (first, answers) => {
              stray.length = 0
              const script: Answer[] = [
                { status: 200, index: '5', body: JSON.stringify([first]) },
                ...answers,
              ]
              agent.load(script)
              const registry = consul({
                url: agent.url,
                backoff: { initialMs: 1, maxMs: 2 },
                rateLimit: { burstCount: 1_000, refillMs: 1 },
                limits: { maxResponseBytes: 256 * 1024 },
              })
              const rec = recorder()
              const stop = new AbortController()
              try {
                registry.watch('orders', rec.listener, { signal: stop.signal })
                // One request past the script: every answer has been processed.
                await agent.waitForRequests(script.length + 1)
              } finally {
                stop.abort()
                await registry.close()
              }
              expect(stray).toEqual([])
              expect(rec.snapshots.length).toBeGreaterThan(0)
              for (const s of rec.snapshots) expect(s.instances.length).toBeGreaterThan(0)
              for (const e of rec.errors) checkError(e)
              for (const index of agent.requests()) {
                if (index === '') continue
                expect(index).toMatch(/^\d{1,20}$/)
                expect(BigInt(index) >= 1n && BigInt(index) <= MAX_INDEX).toBe(true)
              }
            },
          ),
          params(100),
        )
      } finally {
        await agent.close()
      }
    },
    TIMEOUT_MS,
  )
})

// ---- etcd ------------------------------------------------------------------------------------

const etcdValue = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.string({ maxLength: 40 }),
        fc.constantFrom(
          '10.0.0.1:80',
          '[::1]:8080',
          'http://h:1/x',
          'h\uFFFD:1',
          `${'h'.repeat(300)}:1`,
        ),
      )
      .map((s) => Buffer.from(s)),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({
        address: host,
        port,
        name: fc.oneof(fc.constant('svc'), json),
        weight: fc.oneof(fc.constant(undefined), json),
        tags: fc.oneof(fc.constant(undefined), json),
        Addr: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 20 })),
        endpoints: fc.oneof(
          fc.constant(undefined),
          fc.array(fc.string({ maxLength: 20 }), { maxLength: 2 }),
        ),
        nodes: fc.oneof(fc.constant(undefined), json),
      })
      .map((v) => Buffer.from(JSON.stringify(v))),
  },
  { weight: 1, arbitrary: fc.constant(Buffer.alloc(300 * 1024, 0x61)) },
)

describe('fuzz: etcd values', () => {
  let server: EtcdServer
  let writer: Etcd3
  beforeAll(async () => {
    server = await EtcdServer.start()
    writer = server.client()
  })
  afterAll(async () => {
    writer.close()
    await server.remove()
  })

  it('mapping: never throws, bounded reasons', () => {
    fc.assert(
      fc.property(etcdValue, (value) => {
        const r = decodeEntry(
          defaultEtcdCodec,
          { key: '/services/svc/k', service: 'svc', keySuffix: 'k', value },
          256 * 1024,
        )
        expect(['instance', 'malformed', 'ignored']).toContain(r.kind)
        if (r.kind === 'malformed') expect(r.reason.length).toBeLessThan(600)
      }),
      params(300),
    )
  })

  it(
    'the real watch path: a good key is never lost to bad writes, faults are typed',
    async () => {
      let run = 0
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.constantFrom('good', 'x', 'y'), etcdValue), {
            minLength: 1,
            maxLength: 6,
          }),
          async (writes) => {
            stray.length = 0
            const prefix = `/fuzz${String(run++)}/`
            await writer
              .put(`${prefix}svc/good`)
              .value(JSON.stringify({ address: '10.0.0.1', port: 80 }))
            const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
            const snapshots: ServiceSnapshot[] = []
            const errors: unknown[] = []
            let notify: (() => void) | undefined
            const stop = new AbortController()
            let last = 0n
            try {
              provider.watch(
                'svc',
                {
                  onSnapshot: (s) => {
                    snapshots.push(s)
                    notify?.()
                  },
                  onError: (e) => errors.push(e),
                },
                { signal: stop.signal },
              )
              // The good value is listed first: only then is it a last good value to keep.
              await withDeadline(
                new Promise<void>((resolve) => {
                  notify = () => {
                    if (snapshots.length > 0) resolve()
                  }
                  notify()
                }),
                10_000,
                'the first listing',
              )
              for (const [key, value] of writes) {
                const res = await writer.put(`${prefix}svc/${key}`).value(Buffer.from(value))
                last = BigInt(res.header.revision)
              }
              // Every put has been applied once a snapshot at (or past) the last revision arrived.
              await withDeadline(
                new Promise<void>((resolve) => {
                  const check = (): void => {
                    const s = snapshots.at(-1)
                    if (s !== undefined && BigInt(s.revision) >= last) resolve()
                  }
                  notify = check
                  check()
                }),
                10_000,
                'the snapshot of the last put',
              )
            } finally {
              stop.abort()
              await provider.close()
            }
            expect(stray).toEqual([])
            for (const s of snapshots)
              expect(s.instances.some((i) => i.key === `${prefix}svc/good`)).toBe(true)
            for (const e of errors) checkError(e)
          },
        ),
        params(15),
      )
    },
    TIMEOUT_MS,
  )
})
