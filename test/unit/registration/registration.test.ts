import { describe, expect, it } from 'vitest'
import { parseRegisterOptions, parseRegistration } from '../../../src/registration/options.js'
import { startHealthServer } from '../../../src/registration/health-server.js'
import { invalidOption } from '../../support/errors.js'

const base = { name: 'payments', address: '10.0.0.7', port: 8080 }

describe('parseRegistration', () => {
  it('applies defaults', () => {
    const r = parseRegistration(base)
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
    const h = parseRegistration({ ...base, check: { http: 'http://10.0.0.7:8080/health' } })
    expect(h.check).toEqual({
      kind: 'http',
      http: 'http://10.0.0.7:8080/health',
      intervalMs: 10_000,
      timeoutMs: 5_000,
      deregisterCriticalAfterMs: undefined,
    })
    expect(parseRegistration({ ...base, check: { ttlMs: 30_000 } }).check).toEqual({
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
    [{ ...base, check: { ttl: 30_000 } }, 'check.ttl', /did you mean "check\.ttlMs"/],
    [{ ...base, check: { http: 'http://x/h', ttlMs: 5_000 } }, 'check', /either/],
    [{ ...base, timeout: 5 }, 'timeout', /register\(\) has no option "timeout"/],
    [{ ...base, port: '8080' }, 'port', /got "8080"\. Pass a whole number/],
    [{ ...base, check: { http: 'ftp://root:hunter2@x/h' } }, 'check.http', /root:\*\*\*@x/],
  ])('rejects %j naming %s', (input, option, fix) => {
    const e = invalidOption(() => parseRegistration(input as never))
    expect(e.option).toBe(option)
    expect(e.message).toMatch(fix)
  })

  it('validates register options', () => {
    expect(parseRegisterOptions({ handleSignals: true })).toMatchObject({
      handleSignals: true,
      handleCrashes: true,
      shutdownTimeoutMs: 3_000,
    })
    expect(invalidOption(() => parseRegisterOptions({ shutdownTimeoutMs: -1 })).option).toBe(
      'options.shutdownTimeoutMs',
    )
    expect(
      invalidOption(() => parseRegisterOptions({ handleSignals: 'yes' } as never)).option,
    ).toBe('options.handleSignals')
    expect(invalidOption(() => parseRegisterOptions({ signal: 5 } as never)).option).toBe(
      'options.signal',
    )
    expect(
      invalidOption(() => parseRegisterOptions({ handleSignal: true } as never)).message,
    ).toMatch(/did you mean "options\.handleSignals"/)
  })

  it('never quotes the password of a health URL', () => {
    const e = invalidOption(() =>
      parseRegistration({ ...base, check: { http: 'ftp://root:hunter2@x/h' } }),
    )
    expect(e.message).not.toContain('hunter2')
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
