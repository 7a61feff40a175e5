import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  ErrorCode,
  InvalidOptionError,
  RegistrationError,
  type WayfindError,
} from '../../../src/errors.js'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationState,
} from '../../../src/registration/contract.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { eventually, withDeadline } from '../../support/wait.js'
import { recorder, summary } from './helpers.js'

let server: ConsulTestServer
let registry: ConsulRegistry | undefined
const cleanups: (() => unknown)[] = []

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
  await registry?.close()
  registry = undefined
  await server.close()
})

function reg(overrides: Partial<NormalizedRegistration> = {}): NormalizedRegistration {
  return {
    name: 'payments',
    id: 'payments-1',
    address: '10.0.0.7',
    port: 8080,
    tags: ['v2'],
    meta: { zone: 'a' },
    weight: 3,
    check: { kind: 'ttl', ttlMs: 1_000, deregisterCriticalAfterMs: undefined },
    ...overrides,
  }
}

interface Ctx {
  ctx: RegisterContext
  stop: AbortController
  states: { state: Exclude<RegistrationState, 'deregistered'>; error?: WayfindError }[]
  /** Resolves when `state` is reported at a position ≥ from. */
  reached(state: RegistrationState, from?: number, timeoutMs?: number): Promise<void>
}

function context(): Ctx {
  const stop = new AbortController()
  const states: Ctx['states'] = []
  const waiters = new Set<() => void>()
  cleanups.push(() => {
    stop.abort()
  })
  return {
    stop,
    states,
    ctx: {
      signal: stop.signal,
      onState(state, error) {
        states.push(error === undefined ? { state } : { state, error })
        for (const w of waiters) w()
      },
    },
    reached(state, from = 0, timeoutMs = 5_000) {
      let w: () => void = () => {}
      return withDeadline(
        new Promise<void>((resolve) => {
          w = () => {
            if (states.slice(from).some((s) => s.state === state)) resolve()
          }
          waiters.add(w)
          w()
        }),
        timeoutMs,
        `registration state "${state}"`,
      ).finally(() => waiters.delete(w))
    },
  }
}

async function agentLists(id: string): Promise<boolean> {
  const res = await fetch(`${server.url}/v1/agent/service/${encodeURIComponent(id)}`)
  await res.text()
  return res.status === 200
}

async function agentCheck(checkId: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`${server.url}/v1/agent/checks`)
  const checks = (await res.json()) as Record<string, Record<string, unknown>>
  return checks[checkId]
}

describe('consul registration', () => {
  it('registers a TTL service that turns passing, and critical once heartbeats stop', async () => {
    server = await startConsulServer()
    registry = consul({ url: server.url })
    const watchStop = new AbortController()
    cleanups.push(() => {
      watchStop.abort()
    })
    const rec = recorder()
    registry.watch('payments', rec.listener, { signal: watchStop.signal })
    // Until the first heartbeat passes, ?passing lists nothing.
    expect((await rec.snapshot()).instances).toEqual([])
    const c = context()
    const session = await registry.register(reg(), c.ctx)
    expect(c.states.map((s) => s.state)).toEqual(['registered'])
    const up = await rec.snapshot((s) => s.instances.length === 1)
    expect(summary(up)).toEqual(['payments-1@10.0.0.7:8080/passing'])
    expect(up.instances[0]).toMatchObject({ tags: ['v2'], meta: { zone: 'a' }, weight: 3 })
    const check = await agentCheck('service:payments-1')
    expect(check).toMatchObject({ Status: 'passing', ServiceID: 'payments-1' })
    // Heartbeats keep it passing past several TTLs.
    const passes = (): number =>
      server.stats.requests.filter((r) => r.path === '/v1/agent/check/pass/service:payments-1')
        .length
    const before = passes()
    await eventually(() => (passes() >= before + 4 ? true : undefined), {
      timeoutMs: 5_000,
      what: 'four more heartbeats',
    })
    expect(rec.snapshots.at(-1)!.instances).toHaveLength(1)
    // Stop heartbeating (without deregistering): the TTL expires and the watch drops it.
    c.stop.abort()
    const down = await rec.snapshot((s) => s.instances.length === 0, { from: 2 })
    expect(down.instances).toEqual([])
    expect((await agentCheck('service:payments-1'))?.Output).toMatch(/TTL expired/)
    await session.deregister(AbortSignal.timeout(2_000))
    expect(await agentLists('payments-1')).toBe(false)
  })

  it('sends an HTTP check with durations as strings, and the agent runs it', async () => {
    server = await startConsulServer()
    const health = http.createServer((_req, res) => {
      res.end('{"status":"UP"}')
    })
    health.listen(0, '127.0.0.1')
    await once(health, 'listening')
    cleanups.push(() => {
      health.close()
    })
    const url = `http://127.0.0.1:${(health.address() as AddressInfo).port}/health`
    registry = consul({ url: server.url })
    const c = context()
    await registry.register(
      reg({
        address: '127.0.0.1',
        check: {
          kind: 'http',
          http: url,
          intervalMs: 1_000,
          timeoutMs: 500,
          deregisterCriticalAfterMs: 90_000,
        },
      }),
      c.ctx,
    )
    const check = await agentCheck('service:payments-1')
    expect(check).toMatchObject({ Interval: '1s', Timeout: '500ms' })
    const rec = recorder()
    const watchStop = new AbortController()
    cleanups.push(() => {
      watchStop.abort()
    })
    registry.watch('payments', rec.listener, { signal: watchStop.signal })
    await rec.snapshot((s) => s.instances.length === 1, { timeoutMs: 8_000 })
  })

  it('registers again when the agent forgets a TTL service (404 on heartbeat)', async () => {
    server = await startConsulServer()
    registry = consul({ url: server.url })
    const c = context()
    await registry.register(reg(), c.ctx)
    server.restartAgent()
    expect(await agentLists('payments-1')).toBe(false)
    await c.reached('lost', 1)
    await c.reached('registered', 1)
    const lost = c.states.find((s) => s.state === 'lost')!
    expect(lost.error?.code).toBe(ErrorCode.LEASE_LOST)
    expect(lost.error?.message).toMatch(/404/)
    expect(await agentLists('payments-1')).toBe(true)
    expect((await agentCheck('service:payments-1'))?.Status).toBe('passing')
  })

  it('registers again on the legacy 500 "does not have associated TTL"', async () => {
    server = await startConsulServer()
    server.faults.legacyStatusCodes = true
    registry = consul({ url: server.url })
    const c = context()
    await registry.register(reg(), c.ctx)
    server.restartAgent()
    await c.reached('registered', 2)
    expect(c.states.find((s) => s.state === 'lost')?.error?.message).toMatch(
      /does not have associated TTL/,
    )
    expect(await agentLists('payments-1')).toBe(true)
  })

  it('notices a forgotten HTTP-check service by reconciling, and registers it again', async () => {
    server = await startConsulServer()
    registry = consul({ url: server.url, reconcileIntervalMs: 100 })
    const c = context()
    await registry.register(
      reg({
        check: {
          kind: 'http',
          http: 'http://127.0.0.1:1/health',
          intervalMs: 10_000,
          timeoutMs: 1_000,
          deregisterCriticalAfterMs: undefined,
        },
      }),
      c.ctx,
    )
    server.restartAgent()
    await c.reached('registered', 2)
    expect(await agentLists('payments-1')).toBe(true)
  })

  it('reports degraded while the agent fails, then registered again', async () => {
    server = await startConsulServer()
    registry = consul({ url: server.url, backoff: { initialMs: 10, maxMs: 50 } })
    const c = context()
    await registry.register(reg(), c.ctx)
    server.faults.failNext(2, 500, 'rpc error making call: EOF')
    await c.reached('degraded', 1)
    await c.reached('registered', 2)
    const degraded = c.states.find((s) => s.state === 'degraded')!
    expect(degraded.error?.code).toBe(ErrorCode.REGISTRATION_FAILED)
    expect(degraded.error?.retryable).toBe(true)
  })

  it('deregisters with an escaped ID and treats 404 (already gone) as success', async () => {
    server = await startConsulServer()
    registry = consul({ url: server.url })
    const c = context()
    const session = await registry.register(reg({ id: 'payments/1?x', check: undefined }), c.ctx)
    expect(await agentLists('payments/1?x')).toBe(true)
    c.stop.abort()
    await session.deregister(AbortSignal.timeout(2_000))
    expect(await agentLists('payments/1?x')).toBe(false)
    const paths = server.stats.requests
      .filter((r) => r.method === 'PUT' && r.path.includes('deregister'))
      .map((r) => r.path)
    // On the wire the ID is one escaped path segment (an unescaped / gets a 301 from Consul).
    expect(paths).toEqual(['/v1/agent/service/deregister/payments%2F1%3Fx'])
    // Again: the agent answers 404, which is success.
    await session.deregister(AbortSignal.timeout(2_000))
    server.faults.legacyStatusCodes = true
    await session.deregister(AbortSignal.timeout(2_000))
  })

  it.each([
    [
      { check: { kind: 'ttl', ttlMs: 1_000, deregisterCriticalAfterMs: 30_000 } },
      'check.deregisterCriticalAfterMs',
    ],
    [
      {
        check: {
          kind: 'http',
          http: 'http://x/h',
          intervalMs: 500,
          timeoutMs: 100,
          deregisterCriticalAfterMs: undefined,
        },
      },
      'check.intervalMs',
    ],
    [
      {
        check: {
          kind: 'http',
          http: 'not a url',
          intervalMs: 5_000,
          timeoutMs: 100,
          deregisterCriticalAfterMs: undefined,
        },
      },
      'check.http',
    ],
    [{ address: '0.0.0.0' }, 'address'],
    [{ meta: { 'consul-version': '1' } }, 'meta.consul-version'],
    [{ meta: { 'a.b': '1' } }, 'meta.a.b'],
  ] as [Partial<NormalizedRegistration>, string][])(
    'rejects %j before any request, naming %s',
    async (overrides, option) => {
      server = await startConsulServer()
      registry = consul({ url: server.url })
      const before = server.stats.requests.length
      const err = await registry.register(reg(overrides), context().ctx).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(InvalidOptionError)
      expect((err as InvalidOptionError).option).toBe(option)
      expect(server.stats.requests.length).toBe(before)
    },
  )

  it('fails with RegistrationError when the token may not write, never leaking the token', async () => {
    server = await startConsulServer({
      acl: {
        enabled: true,
        masterToken: 'root-token',
        tokens: { 'read-only-secret': { write: false } },
      },
    })
    registry = consul({ url: server.url, token: 'read-only-secret' })
    const err = await registry.register(reg(), context().ctx).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(RegistrationError)
    expect((err as RegistrationError).message).toMatch(/403/)
    expect((err as RegistrationError).message).not.toContain('read-only-secret')
    const reqs = server.stats.requests.filter((r) => r.path.startsWith('/v1/agent/'))
    expect(reqs.length).toBeGreaterThan(0)
    for (const r of reqs) {
      expect(r.headers['x-consul-token']).toBe('read-only-secret')
      expect(r.query.toString()).not.toContain('secret')
    }
  })

  it('registers with a write token through the header', async () => {
    server = await startConsulServer({
      acl: {
        enabled: true,
        masterToken: 'root-token',
        tokens: { 'writer-secret': { write: true } },
      },
    })
    registry = consul({ url: server.url, token: 'writer-secret' })
    const c = context()
    await registry.register(reg(), c.ctx)
    expect(c.states.map((s) => s.state)).toEqual(['registered'])
  })
})
