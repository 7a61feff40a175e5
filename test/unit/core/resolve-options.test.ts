import { afterEach, describe, expect, it, vi } from 'vitest'
import { systemClock } from '../../../src/core/clock.js'
import { createWayfind, InvalidOptionError, memoryRegistry } from '../../../src/index.js'

const MAX_NODE_DELAY_MS = 2 ** 31 - 1

afterEach(() => {
  vi.restoreAllMocks()
  vi.useRealTimers()
})

describe('resolve() options', () => {
  it.each([
    [{ timeoutMs: Number.NaN }, 'timeoutMs', /got NaN/],
    [{ timeoutMs: -1 }, 'timeoutMs', /got -1/],
    [{ timeoutMs: '100' }, 'timeoutMs', /got "100"\. Pass a number of milliseconds/],
    [{ signal: 5 }, 'signal', /got 5\. Pass an AbortSignal/],
    [{ timeout: 100 }, 'timeout', /did you mean "timeoutMs"/],
  ])('rejects %j with INVALID_OPTION naming %s, asynchronously', async (options, option, fix) => {
    await using wf = createWayfind({ registry: memoryRegistry() })
    let pending: Promise<unknown> | undefined
    expect(() => {
      pending = wf.resolve('pay', options as never)
    }).not.toThrow()
    const err: unknown = await pending?.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidOptionError)
    expect((err as InvalidOptionError).code).toBe('WAYFIND_ERR_INVALID_OPTION')
    expect((err as InvalidOptionError).option).toBe(option)
    expect((err as Error).message).toMatch(fix)
  })

  it('timeoutMs: Infinity arms no timer and waits for the first instance', async () => {
    const reg = memoryRegistry()
    await using wf = createWayfind({ registry: reg })
    const timers = vi.spyOn(globalThis, 'setTimeout')
    const pending = wf.resolve('pay', { timeoutMs: Number.POSITIVE_INFINITY })
    await new Promise((r) => setImmediate(r))
    // No timer that Node would fire at once (it clamps anything above 2^31-1 ms to 1 ms).
    for (const [, ms] of timers.mock.calls) expect(ms ?? 0).toBeLessThanOrEqual(MAX_NODE_DELAY_MS)
    reg.put('pay', { id: 'a', host: '10.0.0.1', port: 80 })
    expect((await pending).map((i) => i.id)).toEqual(['a'])
  })

  it('timeoutMs: Infinity still ends with the signal', async () => {
    await using wf = createWayfind({ registry: memoryRegistry() })
    const ac = new AbortController()
    const pending = wf.resolve('pay', { timeoutMs: Number.POSITIVE_INFINITY, signal: ac.signal })
    ac.abort(new Error('stop'))
    await expect(pending).rejects.toThrow('stop')
  })
})

describe('systemClock', () => {
  it('waits out a delay above 2^31-1 ms in steps instead of firing it at once', () => {
    vi.useFakeTimers()
    const timers = vi.spyOn(globalThis, 'setTimeout')
    const fired = vi.fn()
    systemClock.setTimeout(fired, MAX_NODE_DELAY_MS + 10)
    for (const [, ms] of timers.mock.calls) expect(ms ?? 0).toBeLessThanOrEqual(MAX_NODE_DELAY_MS)
    vi.advanceTimersByTime(MAX_NODE_DELAY_MS)
    expect(fired).not.toHaveBeenCalled()
    vi.advanceTimersByTime(10)
    expect(fired).toHaveBeenCalledOnce()
  })

  it('clear() cancels a long delay between its steps', () => {
    vi.useFakeTimers()
    const fired = vi.fn()
    const handle = systemClock.setTimeout(fired, MAX_NODE_DELAY_MS + 10)
    vi.advanceTimersByTime(MAX_NODE_DELAY_MS + 1)
    handle.clear()
    vi.advanceTimersByTime(100)
    expect(fired).not.toHaveBeenCalled()
  })
})
