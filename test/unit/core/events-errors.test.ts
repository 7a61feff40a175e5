import { describe, expect, it, vi } from 'vitest'
import {
  ClosedError,
  ErrorCode,
  InvalidOptionError,
  isWayfindError,
  RegistryUnavailableError,
  WayfindError,
} from '../../../src/errors.js'
import { createEvents } from '../../../src/events.js'
import { Backoff } from '../../../src/core/backoff.js'
import { sleep } from '../../../src/core/abort.js'
import { FakeClock } from '../../support/fake-clock.js'

describe('errors', () => {
  it('carry stable codes, retryable and cause, and brand across copies', () => {
    const cause = new Error('ECONNREFUSED')
    const e = new RegistryUnavailableError('consul down', { cause })
    expect(e.code).toBe('WAYFIND_ERR_REGISTRY_UNAVAILABLE')
    expect(e.retryable).toBe(true)
    expect(e.cause).toBe(cause)
    expect(e.name).toBe('RegistryUnavailableError')
    expect(e).toBeInstanceOf(WayfindError)
    // A look-alike from another copy of the package is recognised by the brand.
    const foreign = Object.defineProperty(new Error('x'), Symbol.for('wayfind.error'), {
      value: true,
    })
    expect(isWayfindError(foreign)).toBe(true)
    expect(foreign instanceof WayfindError).toBe(true)
    expect(new Error('plain') instanceof WayfindError).toBe(false)
    // Subclasses keep the ordinary prototype check: the brand says "a wayfind error", not which.
    expect(e instanceof RegistryUnavailableError).toBe(true)
    expect(foreign instanceof RegistryUnavailableError).toBe(false)
    expect(new ClosedError('x') instanceof RegistryUnavailableError).toBe(false)
    expect(new ClosedError('wayfind.resolve()').message).toMatch(
      /resolve\(\) was called after close/,
    )
  })

  it('InvalidOptionError names the option, the value and the fix', () => {
    const e = new InvalidOptionError('check.intervalMs', '10s', 'Pass milliseconds.')
    expect(e.code).toBe(ErrorCode.INVALID_OPTION)
    expect(e.option).toBe('check.intervalMs')
    expect(e.message).toBe('Invalid option "check.intervalMs": got "10s". Pass milliseconds.')
  })
})

describe('events', () => {
  it('isolates a throwing handler and returns an unsubscribe function', () => {
    const hub = createEvents<{ ping: number }>()
    const seen: number[] = []
    const warnings: unknown[] = []
    const spy = vi
      .spyOn(process, 'emitWarning')
      .mockImplementation((w: string | Error) => void warnings.push(w))
    try {
      hub.api.on('ping', () => {
        throw new Error('boom')
      })
      const off = hub.api.on('ping', (n) => seen.push(n))
      expect(() => hub.emit('ping', 1)).not.toThrow()
      off()
      hub.emit('ping', 2)
      expect(seen).toEqual([1])
      expect(warnings).toHaveLength(2)
      expect(hub.has('ping')).toBe(true)
      hub.api.off('ping')
      expect(hub.has('ping')).toBe(false)
    } finally {
      spy.mockRestore()
    }
  })
  it('does not expose emit to users', () => {
    const hub = createEvents()
    expect(Object.keys(hub.api).sort()).toEqual(['off', 'on'])
  })
})

describe('backoff and sleep', () => {
  it('grows exponentially to the cap, jittered down, and resets', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 0.5, random: () => 0 })
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1_000])
    b.reset()
    expect(b.next()).toBe(100)
    const j = new Backoff({ initialMs: 100, jitter: 0.5, random: () => 1 })
    expect(j.next()).toBe(50)
  })
  it('sleep resolves on the clock and rejects with the abort reason', async () => {
    const clock = new FakeClock()
    const p = sleep(1_000, undefined, clock)
    clock.advance(1_000)
    await p
    const ac = new AbortController()
    const q = sleep(1_000, ac.signal, clock)
    const reason = new Error('stop')
    ac.abort(reason)
    await expect(q).rejects.toBe(reason)
    expect(clock.pending).toBe(0)
  })
})
