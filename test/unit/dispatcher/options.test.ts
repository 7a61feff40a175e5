import { describe, expect, it } from 'vitest'
import { parseRetryAfter } from '../../../src/dispatcher/retry-rules.js'
import { defaultRoute } from '../../../src/dispatcher/routes.js'
import { parseDispatcherOptions } from '../../../src/dispatcher/options.js'
import { invalidOption } from '../../support/errors.js'

describe('parseDispatcherOptions', () => {
  it('applies the documented defaults', () => {
    const o = parseDispatcherOptions(undefined)
    expect(o.connections).toBe(32)
    expect(o.retry).toMatchObject({
      connectRetries: 2,
      sentRetries: 2,
      backoff: { initialMs: 25, maxMs: 1_000 },
    })
    expect([...o.retry!.statusCodes]).toEqual([502, 503, 504])
    expect(o.outlier).toEqual({
      consecutiveFailures: 5,
      baseEjectionMs: 30_000,
      maxEjectionMs: 300_000,
      maxEjectionPercent: 10,
      panicThresholdPercent: 50,
      intervalMs: 10_000,
    })
    expect(parseDispatcherOptions(o)).toBe(o)
    expect(parseDispatcherOptions({ retry: false, outlier: false })).toMatchObject({
      retry: undefined,
      outlier: undefined,
    })
  })

  it('names the bad option, the value and the fix', () => {
    const e1 = invalidOption(() => parseDispatcherOptions({ connections: 0 }))
    expect(e1.option).toBe('dispatcher.connections')
    expect(e1.message).toContain('got 0')
    expect(invalidOption(() => parseDispatcherOptions({ drainTimeoutMs: -1 })).option).toBe(
      'dispatcher.drainTimeoutMs',
    )
    expect(
      invalidOption(() => parseDispatcherOptions({ retry: { statusCodes: [700] } })).option,
    ).toBe('dispatcher.retry.statusCodes[0]')
    expect(
      invalidOption(() => parseDispatcherOptions({ outlier: { maxEjectionPercent: 150 } })).option,
    ).toBe('dispatcher.outlier.maxEjectionPercent')
    expect(invalidOption(() => parseDispatcherOptions({ route: 'payments' as never })).option).toBe(
      'dispatcher.route',
    )
    expect(invalidOption(() => parseDispatcherOptions({ conections: 3 } as never)).option).toBe(
      'dispatcher.conections',
    )
    expect(
      invalidOption(() =>
        parseDispatcherOptions({ retry: { backoff: { initialMs: 100, maxMs: 10 } } }),
      ).option,
    ).toBe('dispatcher.retry.backoff.maxMs')
  })

  it('refuses the internal "resolved" flag like any unknown key (it used to skip validation)', () => {
    const e = invalidOption(() => parseDispatcherOptions({ resolved: true } as never))
    expect(e.option).toBe('dispatcher.resolved')
    expect(e.message).toMatch(/has no option "resolved"/)
    // A user object is checked every time, whatever it carries.
    expect(
      invalidOption(() => parseDispatcherOptions({ resolved: true, connections: -1 } as never))
        .option,
    ).toBe('dispatcher.resolved')
  })

  it('names the nested path of an unknown key, with a near match when there is one', () => {
    const far = invalidOption(() => parseDispatcherOptions({ retry: { maxAttempts: 3 } } as never))
    expect(far.option).toBe('dispatcher.retry.maxAttempts')
    expect(far.message).toMatch(/its options are: connectRetries, sentRetries/)
    const near = invalidOption(() => parseDispatcherOptions({ retry: { sentRetry: 3 } } as never))
    expect(near.message).toMatch(/did you mean "dispatcher\.retry\.sentRetries"/)
  })

  it.each([
    ['backoffInitialMs', 'dispatcher.retry.backoff.initialMs'],
    ['backoffMaxMs', 'dispatcher.retry.backoff.maxMs'],
  ])('refuses the old spelling retry.%s, naming %s', (old, now) => {
    const e = invalidOption(() => parseDispatcherOptions({ retry: { [old]: 50 } }))
    expect(e.option).toBe(`dispatcher.retry.${old}`)
    expect(e.message).toContain(`"${now}"`)
  })
})

describe('routing rule and Retry-After', () => {
  it('routes single-label names only', () => {
    expect(defaultRoute('payments')).toBe('payments')
    expect(defaultRoute('localhost')).toBeUndefined()
    expect(defaultRoute('127.0.0.1')).toBeUndefined()
    expect(defaultRoute('[::1]')).toBeUndefined()
    expect(defaultRoute('api.example.com')).toBeUndefined()
  })

  it('parses delta-seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z')
    expect(parseRetryAfter('3', now)).toBe(3_000)
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:02 GMT', now)).toBe(2_000)
    expect(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now)).toBe(0)
    expect(parseRetryAfter('soon', now)).toBe(-1)
    expect(parseRetryAfter(undefined, now)).toBe(-1)
  })
})
