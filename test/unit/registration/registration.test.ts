import { describe, expect, it } from 'vitest'
import {
  normalizeRegistration,
  normalizeRegisterOptions,
} from '../../../src/registration/registration.js'
import { startHealthServer } from '../../../src/registration/health-server.js'
import { invalidOption } from '../../support/errors.js'

const base = { name: 'payments', address: '10.0.0.7', port: 8080 }

describe('normalizeRegistration', () => {
  it('applies defaults', () => {
    const r = normalizeRegistration(base)
    expect(r).toEqual({
      name: 'payments',
      id: 'payments-10.0.0.7-8080',
      address: '10.0.0.7',
      port: 8080,
      tags: [],
      meta: {},
      weight: 1,
      check: undefined,
    })
    expect(Object.isFrozen(r)).toBe(true)
    const h = normalizeRegistration({ ...base, check: { http: 'http://10.0.0.7:8080/health' } })
    expect(h.check).toEqual({
      kind: 'http',
      http: 'http://10.0.0.7:8080/health',
      intervalMs: 10_000,
      timeoutMs: 5_000,
      deregisterCriticalAfterMs: undefined,
    })
    expect(normalizeRegistration({ ...base, check: { ttlMs: 30_000 } }).check).toEqual({
      kind: 'ttl',
      ttlMs: 30_000,
      deregisterCriticalAfterMs: undefined,
    })
  })

  it.each([
    [{ ...base, port: 0 }, 'port', /between 1 and 65535/],
    [{ ...base, name: '' }, 'name', /service name/],
    [{ ...base, address: '' }, 'address', /address/],
    [{ ...base, tags: 'v2' }, 'tags', /array of strings/],
    [{ ...base, meta: { zone: 1 } }, 'meta.zone', /strings/],
    [{ ...base, check: { http: 'not a url' } }, 'check.http', /absolute http/],
    [
      { ...base, check: { http: 'http://x/h', intervalMs: '10s' } },
      'check.intervalMs',
      /milliseconds/,
    ],
    [{ ...base, check: { ttlMs: 30 } }, 'check.ttlMs', /between 1000/],
    [{ ...base, check: { ttl: 30_000 } }, 'check.ttl', /did you mean "ttlMs"/],
    [{ ...base, check: { http: 'http://x/h', ttlMs: 5_000 } }, 'check', /either/],
    [{ ...base, timeout: 5 }, 'timeout', /does not exist/],
  ])('rejects %j naming %s', (input, option, fix) => {
    const e = invalidOption(() => normalizeRegistration(input as never))
    expect(e.option).toBe(option)
    expect(e.message).toMatch(fix)
  })

  it('validates register options', () => {
    expect(normalizeRegisterOptions({ handleSignals: true })).toMatchObject({
      handleSignals: true,
      handleCrashes: true,
      shutdownTimeoutMs: 3_000,
    })
    expect(invalidOption(() => normalizeRegisterOptions({ shutdownTimeoutMs: -1 })).option).toBe(
      'options.shutdownTimeoutMs',
    )
    expect(
      invalidOption(() => normalizeRegisterOptions({ handleSignals: 'yes' } as never)).option,
    ).toBe('options.handleSignals')
  })
})

describe('startHealthServer', () => {
  it('answers {"status":"UP"}, DOWN while draining, and runs the custom check', async () => {
    let healthy = true
    await using health = await startHealthServer({ check: () => healthy })
    const get = async (path = '/health') => {
      const res = await fetch(health.url.replace('/health', path))
      return { status: res.status, body: await res.text() }
    }
    expect(await get()).toEqual({ status: 200, body: '{"status":"UP"}' })
    healthy = false
    expect(await get()).toEqual({ status: 503, body: '{"status":"DOWN"}' })
    healthy = true
    health.setStatus('DOWN')
    expect(await get()).toEqual({ status: 503, body: '{"status":"DOWN"}' })
    expect((await get('/other')).status).toBe(404)
  })
})
