/**
 * Who owns a Consul instance id (the ownership mark in the service's Meta), and how the first
 * registration retries, against the Consul test server: a second registrar cannot steal a live
 * owner's id, `replace` takes it over and the displaced owner stops without deleting the new
 * entry, a crashed owner (checks critical) or an unmarked entry may be taken over; transient
 * agent failures are retried for `timeoutMs`, then rejected as retryable.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  ErrorCode,
  RegistrationConflictError,
  RegistrationError,
  type WayfindError,
} from '../../../src/errors.js'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { OWNER_META_KEY } from '../../../src/registry/consul/registrar.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationState,
} from '../../../src/registration/contract.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { freePort } from '../../support/etcd.js'
import { eventually, withDeadline } from '../../support/wait.js'

let server: ConsulTestServer | undefined
const registries: ConsulRegistry[] = []
const stops: AbortController[] = []

afterEach(async () => {
  for (const s of stops.splice(0)) s.abort()
  for (const r of registries.splice(0)) await r.close()
  await server?.close()
  server = undefined
})

function registry(url: string, extra: Partial<Parameters<typeof consul>[0]> = {}): ConsulRegistry {
  const r = consul({ url, backoff: { initialMs: 20, maxMs: 200 }, ...extra })
  registries.push(r)
  return r
}

function reg(overrides: Partial<NormalizedRegistration> = {}): NormalizedRegistration {
  return {
    name: 'payments',
    id: 'payments-1',
    address: '10.0.0.7',
    port: 8080,
    tags: [],
    meta: { zone: 'a' },
    weight: 1,
    check: { kind: 'ttl', ttlMs: 1_000, deregisterCriticalAfterMs: undefined },
    ...overrides,
  }
}

interface Ctx extends RegisterContext {
  readonly stop: AbortController
  readonly states: { state: RegistrationState; error?: WayfindError }[]
  until(state: RegistrationState, timeoutMs?: number): Promise<WayfindError | undefined>
}

function context(extra: { replace?: boolean; timeoutMs?: number } = {}): Ctx {
  const stop = new AbortController()
  stops.push(stop)
  const states: Ctx['states'] = []
  const waiters = new Set<() => void>()
  return {
    ...extra,
    signal: stop.signal,
    stop,
    states,
    onState(state, error) {
      states.push(error === undefined ? { state } : { state, error })
      for (const w of waiters) w()
    },
    until(state, timeoutMs = 5_000) {
      let w: () => void = () => {}
      return withDeadline(
        new Promise<WayfindError | undefined>((resolve) => {
          w = () => {
            const found = states.find((s) => s.state === state)
            if (found !== undefined) resolve(found.error)
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

async function agentService(url: string, id: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`${url}/v1/agent/service/${encodeURIComponent(id)}`)
  const text = await res.text()
  return res.status === 200 ? (JSON.parse(text) as Record<string, unknown>) : undefined
}

describe('consul registration: ownership of an instance id', () => {
  it('marks its entry and refuses an id a live owner holds, leaving the holder registered', async () => {
    server = await startConsulServer()
    const a = context()
    await registry(server.url).register(reg(), a)
    const held = await agentService(server.url, 'payments-1')
    expect((held?.Meta as Record<string, string>)[OWNER_META_KEY]).toMatch(/^[0-9a-f-]{36}$/)

    const b = context()
    const err = await registry(server.url)
      .register(reg({ port: 9090 }), b)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(err).toBeInstanceOf(RegistrationConflictError)
    expect(err).toMatchObject({
      code: ErrorCode.REGISTRATION_CONFLICT,
      retryable: false,
      id: 'payments-1',
    })
    expect(await agentService(server.url, 'payments-1')).toMatchObject({ Port: 8080 })
    expect(a.states.map((s) => s.state)).toEqual(['registered'])
  })

  it('replace: true takes over; the displaced owner reports lost with the conflict and its deregister keeps the new entry', async () => {
    server = await startConsulServer()
    const a = context()
    const first = await registry(server.url).register(reg(), a)
    const b = context({ replace: true })
    const second = await registry(server.url).register(reg({ port: 9090 }), b)
    const error = await a.until('lost')
    expect(error).toBeInstanceOf(RegistrationConflictError)
    a.stop.abort()
    await first.deregister(AbortSignal.timeout(5_000))
    expect(await agentService(server.url, 'payments-1')).toMatchObject({ Port: 9090 })
    expect(b.states.map((s) => s.state)).toEqual(['registered'])
    b.stop.abort()
    await second.deregister(AbortSignal.timeout(5_000))
    expect(await agentService(server.url, 'payments-1')).toBeUndefined()
  })

  it('takes over an entry whose checks all turned critical (its owner crashed)', async () => {
    server = await startConsulServer()
    const crashed = context()
    await registry(server.url).register(reg(), crashed)
    // A crash: the loops stop, nothing is deregistered; the TTL check turns critical after 1 s.
    crashed.stop.abort()
    const url = server.url
    await eventually(
      async () => {
        const res = await fetch(`${url}/v1/agent/checks`)
        const checks = (await res.json()) as Record<string, { Status: string }>
        return checks['service:payments-1']?.Status === 'critical' ? true : undefined
      },
      { timeoutMs: 10_000, intervalMs: 50, what: 'the crashed owner check to turn critical' },
    )
    const b = context()
    await registry(server.url).register(reg({ port: 9090 }), b)
    expect(await agentService(server.url, 'payments-1')).toMatchObject({ Port: 9090 })
  })

  it('takes over an unmarked entry (registered by something that does not guard ownership)', async () => {
    server = await startConsulServer()
    const put = await fetch(`${server.url}/v1/agent/service/register`, {
      method: 'PUT',
      body: JSON.stringify({ ID: 'payments-1', Name: 'payments', Address: '10.0.0.9', Port: 1 }),
    })
    expect(put.status).toBe(200)
    const b = context()
    await registry(server.url).register(reg(), b)
    expect(await agentService(server.url, 'payments-1')).toMatchObject({ Port: 8080 })
  })
})

describe('consul registration: first attempt retries within timeoutMs', () => {
  it('retries 5xx answers and registers', async () => {
    server = await startConsulServer()
    server.faults.failNext(3, 500, 'rpc error making call: EOF')
    const a = context({ timeoutMs: 10_000 })
    await registry(server.url).register(reg(), a)
    expect(a.states.map((s) => s.state)).toEqual(['registered'])
  })

  it('rejects after timeoutMs with a retryable RegistrationError when the agent is unreachable', async () => {
    const port = await freePort()
    const a = context({ timeoutMs: 1_500 })
    const started = performance.now()
    const err = await registry(`http://127.0.0.1:${String(port)}`)
      .register(reg(), a)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    const elapsed = performance.now() - started
    expect(err).toBeInstanceOf(RegistrationError)
    expect(err).toMatchObject({ code: ErrorCode.REGISTRATION_FAILED, retryable: true })
    expect((err as Error).message).toMatch(/after \d+ attempts/)
    expect(elapsed).toBeGreaterThanOrEqual(1_450)
    expect(elapsed).toBeLessThan(1_500 + 2_500)
  })

  it('does not retry a refusal (400): not retryable', async () => {
    server = await startConsulServer()
    server.faults.failNext(1, 400, 'Invalid service address')
    const a = context({ timeoutMs: 10_000 })
    const err = await registry(server.url)
      .register(reg(), a)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(err).toMatchObject({ code: ErrorCode.REGISTRATION_FAILED, retryable: false })
  })
})
