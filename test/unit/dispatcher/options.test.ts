import { describe, expect, it } from 'vitest'
import { parseRetryAfter } from '../../../src/dispatcher/call.js'
import { defaultRoute } from '../../../src/dispatcher/dispatcher.js'
import { validateDispatcherOptions } from '../../../src/dispatcher/options.js'
import { invalidOption } from '../../support/errors.js'

describe('validateDispatcherOptions', () => {
  it('applies the documented defaults', () => {
    const o = validateDispatcherOptions(undefined)
    expect(o.connections).toBe(32)
    expect(o.retry).toMatchObject({ connectRetries: 2, sentRetries: 2, backoffInitialMs: 25 })
    expect([...o.retry!.statusCodes]).toEqual([502, 503, 504])
    expect(o.outlier).toEqual({
      consecutiveFailures: 5,
      baseEjectionMs: 30_000,
      maxEjectionMs: 300_000,
      maxEjectionPercent: 10,
      panicThresholdPercent: 50,
      intervalMs: 10_000,
    })
    expect(validateDispatcherOptions(o)).toBe(o)
    expect(validateDispatcherOptions({ retry: false, outlier: false })).toMatchObject({
      retry: undefined,
      outlier: undefined,
    })
  })

  it('names the bad option, the value and the fix', () => {
    const e1 = invalidOption(() => validateDispatcherOptions({ connections: 0 }))
    expect(e1.option).toBe('dispatcher.connections')
    expect(e1.message).toContain('got 0')
    expect(invalidOption(() => validateDispatcherOptions({ drainTimeoutMs: -1 })).option).toBe(
      'dispatcher.drainTimeoutMs',
    )
    expect(
      invalidOption(() => validateDispatcherOptions({ retry: { statusCodes: [700] } })).option,
    ).toBe('dispatcher.retry.statusCodes')
    expect(
      invalidOption(() => validateDispatcherOptions({ outlier: { maxEjectionPercent: 150 } }))
        .option,
    ).toBe('dispatcher.outlier.maxEjectionPercent')
    expect(
      invalidOption(() => validateDispatcherOptions({ route: 'payments' as never })).option,
    ).toBe('dispatcher.route')
    expect(invalidOption(() => validateDispatcherOptions({ conections: 3 } as never)).option).toBe(
      'dispatcher.conections',
    )
    expect(
      invalidOption(() =>
        validateDispatcherOptions({ retry: { backoffInitialMs: 100, backoffMaxMs: 10 } }),
      ).option,
    ).toBe('dispatcher.retry.backoffMaxMs')
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
